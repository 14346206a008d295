// Process helpers shared by `make dev`'s script and its test. Node standard library only.
import { execFileSync } from 'node:child_process';

/** Every descendant pid of `pid` (ps works on Linux and macOS); [] when ps cannot run. */
export function descendants(pid) {
  let table;
  try { table = execFileSync('ps', ['-A', '-o', 'pid=,ppid='], { encoding: 'utf8' }); } catch { return []; }
  const kids = new Map();
  for (const line of table.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    if (!kids.has(pp)) kids.set(pp, []);
    kids.get(pp).push(p);
  }
  const out = [];
  const walk = (p) => { for (const k of kids.get(p) ?? []) { out.push(k); walk(k); } };
  walk(pid);
  return out;
}
