// /proc readers for the benchmark: CPU time of processes, machine-wide CPU use, CPU pinning.
// Linux only; every function degrades to null/false elsewhere. Node 20 standard library only.

import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
} catch { /* 100 is the Linux default */ }
export const CLK_TCK = clkTck;

/** Fields of /proc/PID/stat (index 0 = pid, 1 = comm, 2 = state, ...), or null if gone. */
function statFields(pid) {
  let text;
  try { text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  // comm may contain spaces and parentheses: it ends at the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < 0) return null;
  return [text.slice(0, open).trim(), text.slice(open + 1, close), ...text.slice(close + 2).trim().split(' ')];
}

/** {utime, stime} in ms of one process (all its threads), or null if it is gone. */
export function procCpuMs(pid) {
  const f = statFields(pid);
  if (!f) return null;
  return { utime: (Number(f[13]) * 1000) / CLK_TCK, stime: (Number(f[14]) * 1000) / CLK_TCK };
}

/** Sum of utime+stime (ms) over `pids`; a process that is gone counts its last known value. */
export function cpuMsOf(pids, lastKnown = new Map()) {
  let total = 0;
  for (const pid of pids) {
    const c = procCpuMs(pid);
    if (c) lastKnown.set(pid, c.utime + c.stime);
    total += lastKnown.get(pid) ?? 0;
  }
  return total;
}

/** Seconds since boot at which `pid` started (CLK_TCK resolution), or null. */
export function procStartSec(pid) {
  const f = statFields(pid);
  return f ? Number(f[21]) / CLK_TCK : null;
}

/** Seconds since boot now (/proc/uptime, 10 ms resolution), or null. */
export function uptimeSec() {
  try { return Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]); } catch { return null; }
}

/** Every descendant of `rootPid` (children, grandchildren, ...) as [{pid, comm}]. */
export function descendants(rootPid) {
  const parentOf = new Map();
  const comm = new Map();
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return []; }
  for (const d of entries) {
    if (!/^\d+$/.test(d)) continue;
    const f = statFields(d);
    if (!f) continue;
    parentOf.set(Number(d), Number(f[3]));
    comm.set(Number(d), f[1]);
  }
  const out = [];
  const want = new Set([rootPid]);
  // Bounded: at most as many passes as there are processes.
  for (let pass = 0, grew = true; grew && pass < parentOf.size + 1; pass++) {
    grew = false;
    for (const [pid, ppid] of parentOf) {
      if (want.has(ppid) && !want.has(pid)) { want.add(pid); out.push({ pid, comm: comm.get(pid) }); grew = true; }
    }
  }
  return out;
}

/** Aggregate CPU jiffies from /proc/stat: {busy, total} (all CPUs), or null. */
export function machineJiffies() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already in user
    return { busy: total - idle, total };
  } catch { return null; }
}

export function loadAvg() {
  try { return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number); } catch { return null; }
}

let tasksetPath;
export function hasTaskset() {
  if (tasksetPath === undefined) {
    tasksetPath = null;
    for (const p of ['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset']) {
      if (fs.existsSync(p)) { tasksetPath = p; break; }
    }
  }
  return tasksetPath !== null;
}

/** Pins every thread of `pid` to `cpuList` ("0", "1", "0-1"); true on success. */
export function pin(pid, cpuList) {
  if (!hasTaskset()) return false;
  try {
    execFileSync(tasksetPath, ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch { return false; }
}

/** The CPUs `pid` may run on ("0", "1", ...) per /proc/PID/status, or null. */
export function allowedCpus(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Cpus_allowed_list:\s*(\S+)/m);
    return m ? m[1] : null;
  } catch { return null; }
}

export function cpuModel() {
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    return m ? m[1].trim() : null;
  } catch { return null; }
}

/** CPU ms of every process on the machine: Map pid -> {comm, ms}. */
export function processTable() {
  const out = new Map();
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return out; }
  for (const d of entries) {
    if (!/^\d+$/.test(d)) continue;
    const f = statFields(d);
    if (f) out.set(Number(d), { comm: f[1], ms: ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK });
  }
  return out;
}

/**
 * The busiest other programs between two processTable() snapshots, by command name, as
 * "name NN%" (% of one core over `wallMs`); `ours` (a Set of pids) is left out.
 */
export function topOthers(before, after, ours, wallMs, n = 3) {
  const byComm = new Map();
  for (const [pid, a] of after) {
    if (ours.has(pid)) continue;
    const d = a.ms - (before.get(pid)?.ms ?? 0);
    if (d > 0) byComm.set(a.comm, (byComm.get(a.comm) ?? 0) + d);
  }
  return [...byComm].sort((x, y) => y[1] - x[1]).slice(0, n)
    .filter(([, ms]) => (100 * ms) / wallMs >= 2)
    .map(([comm, ms]) => `${comm} ${Math.round((100 * ms) / wallMs)}%`);
}
