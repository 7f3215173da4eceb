/**
 * The messages of proto/manager.proto as TypeScript types, and their codecs.
 *
 * Control messages go through protobufjs reflection (parsed once from the embedded .proto). Tunnel data frames,
 * the only messages on the hot path, are coded by hand: a data frame is the field-1 key 0x0a, a varint length and
 * the payload, which `encodeDataFrame` writes straight after the gRPC-web frame header and `dataPayload` reads as a
 * subarray without copying.
 */
import protobuf from "protobufjs";
import { MANAGER_PROTO } from "./_manager_proto.ts";
import { FRAME_HEADER_LEN } from "./grpc_web.ts";
import { errorMessage } from "../base/error_message.ts";

export const SERVICE_NAME = "tp.manager.v1.Manager";
export const API_VERSION = "tp.manager.v1";

/** A message with no fields. */
export type Empty = Record<string, never>;
export type VersionRequest = Empty;
export interface VersionInfo {
  version: string;
  runtime: string;
  api: string;
}
export type HealthRequest = Empty;
export interface HealthInfo {
  serving: boolean;
  sessions: number;
  streams: number;
}
export interface ArriveRequest {
  clientName: string;
  namespace: string;
  clientVersion: string;
  /** The session to resume after a broken connection ("" for a new one). */
  resumeSessionId?: string;
}
export interface ClusterInfo {
  podSubnets: string[];
  serviceSubnets: string[];
  clusterDomain: string;
  dnsServer: string;
  managerVersion: string;
  /** Random per manager process ("" from a manager older than this field). */
  managerId: string;
}
export interface ArriveResponse {
  sessionId: string;
  clusterInfo: ClusterInfo | null;
  sessionTtlMs: number;
  keepaliveIntervalMs: number;
  /** The session named by resumeSessionId was resumed. */
  resumed?: boolean;
  /** How long the manager keeps a resumable stream whose connection broke; 0: it does not resume. */
  resumeGraceMs?: number;
}
export interface SessionRef {
  sessionId: string;
}
export interface DnsRequest {
  sessionId: string;
  query: Uint8Array;
}
export interface DnsResponse {
  answer: Uint8Array;
}

export interface PingRequest {
  sessionId: string;
  destination: string;
  data: Uint8Array;
  timeoutMs: number;
}
export interface PingResponse {
  replied: boolean;
  data: Uint8Array;
  unavailable: string;
}

export const Protocol = { unspecified: 0, tcp: 1, udp: 2 } as const;
export type Protocol = (typeof Protocol)[keyof typeof Protocol];

export const DialCode = { unspecified: 0, ok: 1, refused: 2, unreachable: 3, timeout: 4, denied: 5 } as const;
export type DialCode = (typeof DialCode)[keyof typeof DialCode];
export type DialCodeName = keyof typeof DialCode;

/** The name of a dial code ("ok", "refused", ...), for logs and metric labels. */
export function dialCodeName(code: number): DialCodeName {
  return DIAL_CODE_NAMES[code] ?? "unspecified";
}
const DIAL_CODE_NAMES = Object.fromEntries(Object.entries(DialCode).map(([k, v]) => [v, k])) as Record<
  number,
  DialCodeName
>;

export interface Endpoint {
  ip: string;
  port: number;
}
export interface TunnelOpen {
  sessionId: string;
  protocol: Protocol;
  source: Endpoint | null;
  destination: Endpoint | null;
  /** InterceptTunnel, AgentTunnel: the announced connection this stream joins ("" otherwise). */
  connectionId?: string;
  /** MountTunnel: the intercept whose pod's volumes to mount. */
  interceptId?: string;
  /** Tunnel: keep the stream resumable (both sides keep what the other has not acknowledged). */
  resumable?: boolean;
  /** Tunnel: rejoin this resumable stream instead of dialing. */
  resume?: TunnelResume | null;
}
export interface TunnelResume {
  streamId: string;
  /** Payload bytes of the manager's the client has received. */
  received: number;
}
export interface DialResult {
  code: DialCode;
  message: string;
  /** Set when the manager keeps the stream resumable. */
  streamId?: string;
}

export interface AgentForward {
  agentPort: number;
  appPort: number;
}
export interface AgentArriveRequest {
  namespace: string;
  workload: string;
  podName: string;
  podIp: string;
  forwards: AgentForward[];
  mounts: string[];
  env: Record<string, string>;
  agentVersion: string;
}
export interface InterceptInfo {
  id: string;
  namespace: string;
  workload: string;
  appPort: number;
  localPort: number;
  clientName: string;
  podName: string;
  podIp: string;
  env: Record<string, string>;
  mounts: string[];
}
export interface CreateInterceptRequest {
  sessionId: string;
  workload: string;
  appPort: number;
  localPort: number;
}
export interface RemoveInterceptRequest {
  sessionId: string;
  workload: string;
  /** 0: every port of the workload. */
  appPort: number;
}
export interface RemoveInterceptResponse {
  removed: number;
}
export interface ListAgentsRequest {
  sessionId: string;
  namespace: string;
}
export interface AgentInfo {
  namespace: string;
  workload: string;
  podName: string;
  podIp: string;
  forwards: AgentForward[];
  mounts: string[];
  version: string;
}
export interface AgentList {
  agents: AgentInfo[];
  intercepts: InterceptInfo[];
}
export interface InterceptConnection {
  connectionId: string;
  interceptId: string;
  localPort: number;
  source: Endpoint | null;
}
export type AgentEvent =
  | { intercepts: { appPorts: number[] }; dnsQuery?: undefined; sftp?: undefined }
  | { dnsQuery: { id: number; query: Uint8Array }; intercepts?: undefined; sftp?: undefined }
  | { sftp: { connectionId: string; interceptId: string }; intercepts?: undefined; dnsQuery?: undefined };
export interface AgentDnsAnswerRequest {
  sessionId: string;
  id: number;
  answer: Uint8Array;
}

/** A decoded tunnel frame: exactly one kind. */
export type TunnelFrame =
  | { kind: "data"; data: Uint8Array }
  | { kind: "open"; open: TunnelOpen }
  | { kind: "dial"; dial: DialResult }
  | { kind: "fin" }
  /** `code`: why, for programs (manager.proto TunnelReset); absent for a plain reset (DIAL_CODE_UNSPECIFIED). */
  | { kind: "reset"; reason: string; code?: DialCode }
  | { kind: "keepalive" }
  | { kind: "resumed"; received: number };

/** Acknowledgements of resumable streams (the TunnelAcks method); `sessionId` only in the client's first message. */
export interface TunnelAcks {
  sessionId: string;
  acks: { streamId: string; received: number }[];
}

const root = protobuf.parse(MANAGER_PROTO, { keepCase: false }).root;

/** Encodes and decodes one message type. `decode` throws on malformed input. */
export interface Codec<T> {
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

const toObjectOptions = { longs: Number, enums: Number, bytes: Uint8Array, defaults: true, arrays: true };

function codec<T>(name: string): Codec<T> {
  const type = root.lookupType(`${API_VERSION}.${name}`);
  return {
    encode: (value) => type.encode(type.fromObject(value as Record<string, unknown>)).finish(),
    decode: (bytes) => type.toObject(type.decode(bytes), toObjectOptions) as T,
  };
}

/** A codec for a message that is one oneof: decoding sets only the field present. */
function oneofCodec<T>(name: string): Codec<T> {
  const type = root.lookupType(`${API_VERSION}.${name}`);
  return {
    encode: (value) => type.encode(type.fromObject(value as Record<string, unknown>)).finish(),
    decode: (bytes) => {
      const o = type.toObject(type.decode(bytes), { ...toObjectOptions, defaults: false, oneofs: true });
      const kind = o.kind as string | undefined;
      if (!kind) throw new SyntaxError(`${name} has no kind`);
      // Fill the defaults of the one field set (repeated fields empty rather than absent).
      const field = type.oneofs!.kind!.fieldsArray.find((f) => f.name === kind)!;
      const inner = (field.resolvedType as protobuf.Type).toObject(
        (field.resolvedType as protobuf.Type).fromObject(o[kind] as Record<string, unknown>),
        toObjectOptions,
      );
      return { [kind]: inner } as T;
    },
  };
}

export const codecs = {
  VersionRequest: codec<VersionRequest>("VersionRequest"),
  VersionInfo: codec<VersionInfo>("VersionInfo"),
  HealthRequest: codec<HealthRequest>("HealthRequest"),
  HealthInfo: codec<HealthInfo>("HealthInfo"),
  ArriveRequest: codec<ArriveRequest>("ArriveRequest"),
  ArriveResponse: codec<ArriveResponse>("ArriveResponse"),
  SessionRef: codec<SessionRef>("SessionRef"),
  KeepaliveResponse: codec<Empty>("KeepaliveResponse"),
  RejoinedResponse: codec<{ reset?: number }>("RejoinedResponse"),
  DepartResponse: codec<Empty>("DepartResponse"),
  ClusterInfo: codec<ClusterInfo>("ClusterInfo"),
  DnsRequest: codec<DnsRequest>("DnsRequest"),
  DnsResponse: codec<DnsResponse>("DnsResponse"),
  PingRequest: codec<PingRequest>("PingRequest"),
  TunnelAcks: codec<TunnelAcks>("TunnelAcks"),
  PingResponse: codec<PingResponse>("PingResponse"),
  AgentArriveRequest: codec<AgentArriveRequest>("AgentArriveRequest"),
  InterceptInfo: codec<InterceptInfo>("InterceptInfo"),
  CreateInterceptRequest: codec<CreateInterceptRequest>("CreateInterceptRequest"),
  RemoveInterceptRequest: codec<RemoveInterceptRequest>("RemoveInterceptRequest"),
  RemoveInterceptResponse: codec<RemoveInterceptResponse>("RemoveInterceptResponse"),
  ListAgentsRequest: codec<ListAgentsRequest>("ListAgentsRequest"),
  AgentList: codec<AgentList>("AgentList"),
  InterceptConnection: codec<InterceptConnection>("InterceptConnection"),
  AgentEvent: oneofCodec<AgentEvent>("AgentEvent"),
  AgentDnsAnswerRequest: codec<AgentDnsAnswerRequest>("AgentDnsAnswerRequest"),
  AgentDnsAnswerResponse: codec<Empty>("AgentDnsAnswerResponse"),
};

/** How each method is called: its request and response codecs, and which sides stream. */
export interface MethodInfo {
  name: string;
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** Every method of the Manager service, by name, read from the .proto. */
export const methods: Record<string, MethodInfo> = Object.fromEntries(
  Object.values(root.lookupService(`${API_VERSION}.Manager`).methods).map((m) => [m.name, {
    name: m.name,
    path: `/${SERVICE_NAME}/${m.name}`,
    requestStream: m.requestStream === true,
    responseStream: m.responseStream === true,
  }]),
);

// --- Tunnel frames ---------------------------------------------------------------------------------------------

const tunnelFrameType = root.lookupType(`${API_VERSION}.TunnelFrame`);
/** Key of field 1 (data), wire type 2 (length-delimited): protobuf encoding section "Structure". */
const DATA_KEY = 0x0a;
/** Room before a data payload for the frame header, the data key and a varint length of up to 3 bytes (< 2 MiB). */
export const DATA_HEADROOM = FRAME_HEADER_LEN + 1 + 3;

function varintLen(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : 3;
}

/**
 * Builds a complete gRPC-web frame holding a TunnelFrame{data} from a list of payload chunks, copying them once.
 * Payload over 2 MiB is misuse (frames carry at most 64 KiB).
 */
export function encodeDataFrame(chunks: readonly Uint8Array[], payloadLen: number): Uint8Array {
  const head = encodeDataFrameHeader(payloadLen);
  const out = new Uint8Array(head.length + payloadLen);
  out.set(head);
  let o = head.length;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/**
 * The bytes a data frame of `payloadLen` payload bytes starts with (the gRPC-web frame header and the field's tag
 * and length): written before the payload itself, the payload need not be copied into a frame of its own.
 */
export function encodeDataFrameHeader(payloadLen: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LEN + 1 + varintLen(payloadLen));
  writeDataFrameHeader(out, 0, payloadLen);
  return out;
}

/**
 * Writes the bytes `encodeDataFrameHeader` returns into `out` at `offset` (at most DATA_HEADROOM of them); returns
 * the offset after them, where the payload goes.
 */
export function writeDataFrameHeader(out: Uint8Array, offset: number, payloadLen: number): number {
  if (payloadLen >= 1 << 21) throw new RangeError(`Data frame payload of ${payloadLen} bytes is over 2 MiB`);
  const msgLen = 1 + varintLen(payloadLen) + payloadLen;
  let o = offset;
  out[o++] = 0;
  out[o++] = msgLen >>> 24;
  out[o++] = (msgLen >>> 16) & 0xff;
  out[o++] = (msgLen >>> 8) & 0xff;
  out[o++] = msgLen & 0xff;
  out[o++] = DATA_KEY;
  let v = payloadLen;
  while (v >= 0x80) {
    out[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[o++] = v;
  return o;
}

/** The payload of a data message as a subarray, or undefined when the message is another kind. */
export function dataPayload(msg: Uint8Array): Uint8Array | undefined {
  if (msg.length < 2 || msg[0] !== DATA_KEY) return undefined;
  let len = 0;
  let shift = 0;
  let i = 1;
  for (; i < msg.length && i <= 4; i++) {
    const b = msg[i]!;
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) break;
  }
  i++;
  // Only a message that is exactly one data field takes the fast path; anything else goes to protobufjs.
  if (i + len !== msg.length) return undefined;
  return msg.subarray(i);
}

/** Encodes a control frame (any kind; data too, though `encodeDataFrame` is the fast way). Message bytes only. */
export function encodeTunnelFrame(frame: TunnelFrame): Uint8Array {
  let obj: Record<string, unknown>;
  switch (frame.kind) {
    case "data":
      obj = { data: frame.data };
      break;
    case "open":
      obj = { open: frame.open };
      break;
    case "dial":
      obj = { dial: frame.dial };
      break;
    case "fin":
      obj = { fin: {} };
      break;
    case "reset":
      obj = { reset: { reason: frame.reason, ...(frame.code ? { code: frame.code } : {}) } };
      break;
    case "keepalive":
      obj = { keepalive: {} };
      break;
    case "resumed":
      obj = { resumed: { received: frame.received } };
      break;
    default: {
      const never: never = frame;
      throw new TypeError(`Unknown tunnel frame ${JSON.stringify(never)}`);
    }
  }
  return tunnelFrameType.encode(tunnelFrameType.fromObject(obj)).finish();
}

/** Decodes a tunnel message. Throws SyntaxError for malformed bytes or a frame with no kind. */
export function decodeTunnelFrame(msg: Uint8Array): TunnelFrame {
  const data = dataPayload(msg);
  if (data) return { kind: "data", data };
  let m: Record<string, unknown>;
  try {
    m = tunnelFrameType.toObject(tunnelFrameType.decode(msg), { ...toObjectOptions, defaults: false, oneofs: true });
  } catch (e) {
    throw new SyntaxError(`Cannot decode TunnelFrame: ${errorMessage(e)}`);
  }
  switch (m.kind) {
    case "data":
      return { kind: "data", data: (m.data as Uint8Array | undefined) ?? new Uint8Array() };
    case "open": {
      const o = m.open as Partial<TunnelOpen>;
      return {
        kind: "open",
        open: {
          sessionId: o.sessionId ?? "",
          protocol: (o.protocol ?? 0) as Protocol,
          source: endpoint(o.source),
          destination: endpoint(o.destination),
          connectionId: o.connectionId ?? "",
          interceptId: o.interceptId ?? "",
          ...(o.resumable ? { resumable: true } : {}),
          ...(o.resume
            ? { resume: { streamId: o.resume.streamId ?? "", received: Number(o.resume.received ?? 0) } }
            : {}),
        },
      };
    }
    case "dial": {
      const d = m.dial as Partial<DialResult>;
      return {
        kind: "dial",
        dial: {
          code: (d.code ?? 0) as DialCode,
          message: d.message ?? "",
          ...(d.streamId ? { streamId: d.streamId } : {}),
        },
      };
    }
    case "fin":
      return { kind: "fin" };
    case "reset": {
      const r = m.reset as { reason?: string; code?: number };
      return { kind: "reset", reason: r.reason ?? "", ...(r.code ? { code: r.code as DialCode } : {}) };
    }
    case "keepalive":
      return { kind: "keepalive" };
    case "resumed":
      return { kind: "resumed", received: Number((m.resumed as { received?: number }).received ?? 0) };
    default:
      throw new SyntaxError("TunnelFrame has no kind");
  }
}

function endpoint(e: Partial<Endpoint> | null | undefined): Endpoint | null {
  return e ? { ip: e.ip ?? "", port: e.port ?? 0 } : null;
}
