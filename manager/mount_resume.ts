/**
 * A resumable mount stream: when a workstation's MountTunnel asked for it (TunnelOpen.resumable) and the agent's
 * sftp-server started (its ok dial, the first frame of its AgentTunnel after the open), the manager does not relay
 * the two streams frame by frame: it carries the workstation's side as a resumable stream whose far end is the agent's
 * stream (`carryResumable`, as an intercepted connection), and answers the workstation with a dial frame of its own
 * that names the stream (DialResult.stream_id). When the workstation's connection breaks, sftp-server's stream stays
 * open for the resume grace, and sshfs on the workstation only sees a pause; a MountTunnel with TunnelOpen.resume
 * re-attaches it (`resumeIntercepted`). An agent that refused the mount, or a workstation that did not ask, gets the
 * relay as before.
 */
import { Status } from "../proto/grpc_web.ts";
import { DialCode, encodeTunnelFrame } from "../proto/messages.ts";
import { carryResumable, type HoldingSession, type InterceptResumeHost } from "./intercept_resume.ts";
import type { StreamEnd } from "./relay.ts";
import { decodeTunnelMessage } from "./tunnel.ts";

/**
 * Reads the agent's dial result of a mount stream whose workstation (`session`) asked for a resumable one.
 * "carried": it was ok, and the stream was carried as a resumable one until it was gone for good (or either end was
 * gone before the dial, and both were reset); "relay": the agent refused (its dial frame went on to the workstation),
 * and the caller relays what follows, as for a workstation that did not ask.
 */
export async function carryMount(
  host: InterceptResumeHost,
  session: HoldingSession,
  ws: StreamEnd,
  agent: StreamEnd,
  signal: AbortSignal,
): Promise<"carried" | "relay"> {
  let msg: Uint8Array | null;
  let gone = "";
  try {
    msg = await agent.reader.next();
    if (msg === null) gone = "the agent ended its mount stream before its dial result";
  } catch (e) {
    msg = null;
    gone = `agent gone: ${e instanceof Error ? e.message : e}`;
  }
  if (gone || signal.aborted) {
    const reason = gone || String(signal.reason);
    const reset = encodeTunnelFrame({ kind: "reset", reason });
    for (const e of [ws, agent]) {
      e.out.writeMessage(reset);
      e.out.end(Status.OK, reason);
      e.reader.cancel();
    }
    return "carried";
  }
  let ok = false;
  try {
    const f = decodeTunnelMessage(msg!);
    ok = f.kind === "dial" && f.dial.code === DialCode.ok;
  } catch { /* the relay's to refuse */ }
  if (!ok) {
    ws.out.writeMessage(msg!);
    return "relay";
  }
  await carryResumable(host, session, agent, ws, undefined, signal);
  return "carried";
}
