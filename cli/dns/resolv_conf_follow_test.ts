/**
 * ResolvConfFollower on real files in a temporary directory, with the kernel's inotify: rewrites in place, a new
 * file renamed over a symlink's target, a program that keeps rewriting, and an edit of tp's own file. Each wait is
 * for an event (a callback or a log line), bounded.
 */
import assert from "node:assert/strict";
import { applyResolvConf, parseResolvConf, restoreResolvConf } from "./resolv_conf.ts";
import { type FollowOptions, ResolvConfFollower } from "./resolv_conf_follow.ts";

const ORIGINAL = "nameserver 198.18.2.53\nsearch home.test\n";
const TP = "198.19.0.255";
const SEARCH = ["default.svc.cluster.local"];

interface Fixture {
  path: string;
  stateDir: string;
  lines: string[];
  originals: string[][];
  /** Resolves once `test` holds (checked at each log line and new original), at most 5 s. */
  until(test: () => boolean, what: string): Promise<void>;
  /** Resolves with the nameservers of the next new original. */
  nextOriginal(): Promise<string[]>;
  /** Resolves once a log line matches. */
  logged(re: RegExp): Promise<string>;
  follower: ResolvConfFollower;
}

async function withFollower(
  fn: (f: Fixture) => Promise<void>,
  opts: { symlink?: boolean; options?: Partial<FollowOptions> } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "tp-follow-" });
  const waiters: { test: () => boolean; resolve: () => void }[] = [];
  const originals: string[][] = [];
  const lines: string[] = [];
  const wake = () => {
    for (const w of [...waiters]) if (w.test()) waiters.splice(waiters.indexOf(w), 1), w.resolve();
  };
  const waitFor = (test: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within 15 s; log:\n${lines.join("\n")}`)), 15_000);
      waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
      wake();
    });
  let path = `${dir}/resolv.conf`;
  if (opts.symlink) {
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/run/resolv.conf`, ORIGINAL);
    await Deno.mkdir(`${dir}/etc`);
    path = `${dir}/etc/resolv.conf`;
    await Deno.symlink(`${dir}/run/resolv.conf`, path);
  } else {
    await Deno.writeTextFile(path, ORIGINAL);
  }
  const stateDir = `${dir}/state`;
  await applyResolvConf({ path, stateDir }, { dnsAddress: TP, searchDomains: SEARCH });
  const follower = ResolvConfFollower.start({
    path,
    stateDir,
    dnsAddress: TP,
    searchDomains: SEARCH,
    log: (l) => (lines.push(l), wake()),
    onNewOriginal: (ns) => (originals.push(ns), wake()),
    ...opts.options,
  });
  let taken = 0;
  try {
    await fn({
      path,
      stateDir,
      lines,
      originals,
      until: waitFor,
      follower,
      nextOriginal: async () => {
        const want = ++taken;
        await waitFor(() => originals.length >= want, "new original");
        return originals[want - 1]!;
      },
      logged: async (re) => {
        await waitFor(() => lines.some((l) => re.test(l)), `log line ${re}`);
        return lines.find((l) => re.test(l))!;
      },
    });
  } finally {
    await follower.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const nameservers = async (path: string) => parseResolvConf(await Deno.readTextFile(path)).nameservers;

Deno.test("ResolvConfFollower takes a file rewritten in place as the new original and points it at tp again", async () => {
  await withFollower(async ({ path, stateDir, nextOriginal, lines, follower }) => {
    const ino = (await Deno.stat(path)).ino;
    const lease = "# new lease\nnameserver 198.18.9.9\nsearch wifi.test\n";
    await Deno.writeTextFile(path, lease);
    assert.deepEqual(await nextOriginal(), ["198.18.9.9"]);
    assert.deepEqual(await nameservers(path), [TP]);
    assert.deepEqual(parseResolvConf(await Deno.readTextFile(path)).search, [...SEARCH, "wifi.test"]);
    assert.equal((await Deno.stat(path)).ino, ino, "still written in place");
    assert.match(lines.at(-1)!, /was rewritten by another program \(nameservers 198\.18\.9\.9\): tp took it/);
    assert.equal(follower.status().newOriginals, 1);
    // A second lease: the newest original is the one tp quit restores.
    const next = "nameserver 198.18.9.10\n";
    await Deno.writeTextFile(path, next);
    assert.deepEqual(await nextOriginal(), ["198.18.9.10"]);
    await follower.close();
    assert.equal((await restoreResolvConf({ path, stateDir })).action, "restored");
    assert.equal(await Deno.readTextFile(path), next);
  });
});

Deno.test("ResolvConfFollower follows a symlink's target replaced by a rename, as NetworkManager does", async () => {
  await withFollower(async ({ path, stateDir, nextOriginal, follower }) => {
    const target = await Deno.realPath(path);
    const dir = target.replace(/\/[^/]*$/, "");
    for (const ns of ["198.18.9.1", "198.18.9.2"]) {
      await Deno.writeTextFile(`${dir}/.tmp`, `nameserver ${ns}\n`);
      await Deno.rename(`${dir}/.tmp`, target);
      assert.deepEqual(await nextOriginal(), [ns]);
      assert.deepEqual(await nameservers(path), [TP]);
    }
    assert.ok(follower.status().watching.includes(dir));
    await follower.close();
    await restoreResolvConf({ path, stateDir });
    assert.equal(await Deno.readTextFile(path), "nameserver 198.18.9.2\n");
    assert.ok((await Deno.lstat(path)).isSymlink, "the symlink is still one");
  }, { symlink: true });
});

Deno.test("ResolvConfFollower backs off from a program that keeps rewriting, says so, and looks again after", async () => {
  await withFollower(async ({ path, logged, follower, originals, until }) => {
    // The program: rewrites the file each time tp has pointed it at tp again, until tp backs off.
    let n = 0;
    while (!follower.status().backOffs && n < 10) {
      const taken = originals.length;
      await Deno.writeTextFile(path, `nameserver 198.18.8.${++n}\n`);
      await until(() => originals.length > taken || follower.status().backOffs > 0, "re-apply or back-off");
    }
    assert.equal(n, 4, "three re-applies, then the back-off");
    // Read at once: the back-off lasts 3 s of real time, which a loaded machine can spend on the awaits below.
    assert.equal(follower.status().state, "backing-off");
    const said = await logged(/again and again/);
    assert.match(said, /re-applied its settings 3 times within 10 s\): tp backs off for 3 s/);
    assert.deepEqual(await nameservers(path), [`198.18.8.${n}`], "the program's file is left to it");
    // When the back-off ends, tp looks once more and takes the file.
    await until(() => originals.length === 4, "the look after the back-off");
    assert.deepEqual(originals.at(-1), [`198.18.8.${n}`]);
    assert.deepEqual(await nameservers(path), [TP]);
    assert.equal(follower.status().state, "following");
  }, { options: { backoff: { maxReapplies: 3, backoffMs: 3_000 } } });
});

Deno.test("ResolvConfFollower leaves an edit that keeps tp's nameserver, and never takes it as an original", async () => {
  await withFollower(async ({ path, logged, follower }) => {
    const edited = (await Deno.readTextFile(path)) + "options edns0\n";
    await Deno.writeTextFile(path, edited);
    await logged(/still names tp's nameserver 198\.19\.0\.255: left as it is/);
    assert.equal(await Deno.readTextFile(path), edited);
    assert.equal(follower.status().newOriginals, 0);
  });
});

Deno.test("ResolvConfFollower keeps following after a re-apply that another program's write cut short", async () => {
  // A re-apply that fails its read-back (the other program wrote in between) puts the program's file back and
  // removes tp's record and backup: that is the state made here. Before the fix tp took "no record" as "nothing of
  // tp's to follow" and stopped re-applying for good: cluster names unresolvable, `tp status` saying "following".
  await withFollower(async ({ path, stateDir, nextOriginal }) => {
    for (const f of ["resolv.conf.json", "resolv.conf.orig"]) await Deno.remove(`${stateDir}/${f}`);
    await Deno.writeTextFile(path, "nameserver 198.18.9.9\n");
    assert.deepEqual(await nextOriginal(), ["198.18.9.9"]);
    assert.deepEqual(await nameservers(path), [TP], "pointed at tp again");
    // And it goes on following: the next lease is taken too.
    await Deno.writeTextFile(path, "nameserver 198.18.9.10\n");
    assert.deepEqual(await nextOriginal(), ["198.18.9.10"]);
    assert.deepEqual(await nameservers(path), [TP]);
  });
});

Deno.test("ResolvConfFollower tries again by itself after a re-apply that failed, with no further rewrite", async () => {
  await withFollower(async ({ path, stateDir, nextOriginal, logged }) => {
    // tp's next re-apply cannot save its backup (a directory where its temporary file goes): it fails, and the file
    // stays the program's. The program writes once and never again.
    const blocker = `${stateDir}/resolv.conf.orig.tmp-${Deno.pid}`;
    await Deno.mkdir(`${blocker}/x`, { recursive: true });
    await Deno.writeTextFile(path, "nameserver 198.18.9.9\n");
    await logged(/cannot follow a change of .*resolv\.conf/);
    assert.deepEqual(await nameservers(path), ["198.18.9.9"], "the failed re-apply left the program's file");
    await Deno.remove(blocker, { recursive: true });
    assert.deepEqual(await nextOriginal(), ["198.18.9.9"]);
    assert.deepEqual(await nameservers(path), [TP], "pointed at tp again without another rewrite");
  });
});
