"""The remote sync helper: its source (python3 on the remote, stdlib only, run with `-c`, no
file left there) and the command that starts it. Pure text: `sidecar/sync/remote.py` runs it
on the pooled connection; `remote_config/sync.py` re-exports both names.
"""

from __future__ import annotations

import shlex

# -- the remote helper ------------------------------------------------------------------------
# Protocol: requests and replies are frames: 4-byte big-endian length + JSON. A request is
# {"root": DIR, "ops": [...], "generation": N?, "suffix": ".orch-conflict-STAMP", "hold": B};
# the helper holds `<root>/.orch/lock` while applying (and after, while "hold" is true, so an
# rsync batch between two requests is covered too; snapshots take the same lock). Each "put"
# op is followed by exactly `size` bytes of content. Expectations are [size, mtime_ns, hash,
# ino, ctime_ns] (what orch last wrote) or null (orch never wrote it): a file is unchanged when
# all four stats match, else when its content hash does; with the inode unknown (a first copy
# records no remote stat) the hash alone decides, whatever the size. A delete may add "alt":
# hashes it may also remove (content a batch cut short may have left there). The reply has one
# result per op: {"ok": true, "stat": [size, mtime_ns, ino, ctime_ns]}, {"conflict": ASIDE, ...},
# {"miss": true}, {"drift": true} (a "verify" op) or {"error": TEXT}. A request with
# "begin": TOKEN marks the folder's generation as TOKEN + "~" (being changed) before it
# applies anything; "generation": TOKEN records the finished one, so a batch cut in half
# never leaves a label that a snapshot could trust. Started with the sync's id as its argument,
# the helper first ends older helpers of the same sync still alive (`fence`).
HELPER_SOURCE = r"""
import hashlib, json, os, stat, struct, sys, time
R, W = sys.stdin.buffer, sys.stdout.buffer
def readn(n):
    b = bytearray()
    while len(b) < n:
        c = R.read(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return bytes(b)
def send(obj):
    data = json.dumps(obj).encode()
    W.write(struct.pack(">I", len(data)) + data)
    W.flush()
def md5(data=b""):
    try:
        return hashlib.md5(data, usedforsecurity=False)
    except TypeError:
        return hashlib.md5(data)
def digest(p):
    if os.path.islink(p):
        return md5(b"link:" + os.readlink(p).encode()).hexdigest()
    h = md5()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
def same(p, exp):
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return exp is None
    if exp is None or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return False
    ino = exp[3] if len(exp) > 4 else None
    if st.st_size == exp[0] and st.st_mtime_ns == exp[1]:
        if ino is None and exp[2] is None:
            return True
        if ino is not None and st.st_ino == ino and st.st_ctime_ns == exp[4]:
            return True
    if exp[2] is None:
        return True
    if ino is not None and st.st_size != exp[0]:
        return False
    return digest(p) == exp[2]
def aside(root, rel, suffix):
    n = 0
    while True:
        name = rel + suffix + ("-%d" % n if n else "")
        if not os.path.lexists(os.path.join(root, name)):
            os.rename(os.path.join(root, rel), os.path.join(root, name))
            return name
        n += 1
def stat_of(p):
    st = os.lstat(p)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
def check(root, rel, exp, suffix, new_hash=None, alt=None):
    p = os.path.join(root, rel)
    if same(p, exp):
        return None, False
    if not os.path.lexists(p):
        return None, False
    if (new_hash is not None or alt) and not os.path.isdir(p):
        d = digest(p)
        if d == new_hash or d in (alt or ()):
            return None, d == new_hash
    return aside(root, rel, suffix), False
def put(root, op, data, suffix):
    rel = op["path"]
    p = os.path.join(root, rel)
    d = os.path.dirname(p)
    os.makedirs(d, exist_ok=True)
    moved, _ = check(root, rel, op.get("expect"), suffix, op.get("hash"), op.get("alt"))
    tmp = os.path.join(d, "." + os.path.basename(p)[:200] + ".orch-tmp")
    if op.get("link"):
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(data.decode(), tmp)
        os.replace(tmp, p)
        return {"ok": True, "stat": stat_of(p), "conflict": moved}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, op["mode"] & 0o7777)
    finally:
        os.close(fd)
    os.utime(tmp, ns=(op["mtime_ns"], op["mtime_ns"]))
    os.replace(tmp, p)
    out = {"ok": True, "stat": stat_of(p)}
    if moved:
        out["conflict"] = moved
    return out
def delete(root, op, suffix):
    rel = op["path"]
    p = os.path.join(root, rel)
    if not os.path.lexists(p):
        return {"ok": True}
    if same(p, op.get("expect")) or (op.get("alt") and digest(p) in op["alt"]):
        os.unlink(p)
        return {"ok": True}
    return {"ok": True, "conflict": aside(root, rel, suffix)}
def verify(root, op):
    p = os.path.join(root, op["path"])
    if not os.path.lexists(p):
        return {"drift": True, "gone": True}
    if same(p, op["expect"]):
        return {"ok": True, "stat": stat_of(p)}
    return {"drift": True}
def move(root, op):
    src, dst = os.path.join(root, op["src"]), os.path.join(root, op["path"])
    if not os.path.lexists(src) or not same(src, op.get("expect")):
        return {"miss": True}
    if os.path.lexists(dst) and not same(dst, op.get("expect_dst")):
        return {"miss": True}
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.replace(src, dst)
    return {"ok": True, "stat": stat_of(dst)}
def generation(root, token):
    d = os.path.join(root, ".orch")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".generation.tmp")
    with open(tmp, "w") as f:
        f.write("%s\n" % token)
    os.replace(tmp, os.path.join(d, "generation"))
LOCK = [None]
def lock(root, hold):
    if hold and LOCK[0] is None:
        import fcntl
        os.makedirs(os.path.join(root, ".orch"), exist_ok=True)
        fd = os.open(os.path.join(root, ".orch", "lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        LOCK[0] = fd
    elif not hold and LOCK[0] is not None:
        os.close(LOCK[0])
        LOCK[0] = None
def handle(req):
    root = os.path.expanduser(req["root"])
    os.makedirs(root, exist_ok=True)
    lock(root, True)
    if req.get("begin"):
        generation(root, req["begin"] + "~")
    suffix = req.get("suffix", ".orch-conflict")
    results = []
    for op in req["ops"]:
        data = readn(op["size"]) if op["op"] == "put" else b""
        try:
            kind = op["op"]
            if kind == "put":
                results.append(put(root, op, data, suffix))
            elif kind == "delete":
                results.append(delete(root, op, suffix))
            elif kind == "move":
                results.append(move(root, op))
            elif kind == "check":
                moved, _ = check(
                    root, op["path"], op.get("expect"), suffix, op.get("hash"), op.get("alt")
                )
                results.append({"ok": True, "conflict": moved} if moved else {"ok": True})
            elif kind == "mkdir":
                os.makedirs(os.path.join(root, op["path"]), exist_ok=True)
                results.append({"ok": True})
            elif kind == "rmdir":  # only when empty; "gone" says whether it is
                p = os.path.join(root, op["path"])
                try:
                    os.rmdir(p)
                except OSError:
                    pass
                results.append({"ok": True, "gone": not os.path.lexists(p)})
            elif kind == "stats":  # compact: [[size, mtime_ns, ino, ctime_ns] or null, ...]
                out = []
                for rel in op["paths"]:
                    p = os.path.join(root, rel)
                    out.append(stat_of(p) if os.path.lexists(p) else None)
                results.append({"ok": True, "stats": out})
            elif kind == "list":  # every file and symlink under the root, .orch/ left out
                found = []
                for d, dirs, files in os.walk(root):
                    rel = os.path.relpath(d, root)
                    rel = "" if rel == "." else rel + "/"
                    if not rel:
                        dirs[:] = [x for x in dirs if x != ".orch"]
                    found += [rel + f for f in files]
                    found += [rel + x for x in dirs if os.path.islink(os.path.join(d, x))]
                results.append({"ok": True, "paths": found})
            elif kind == "sweep":  # temp files of writes cut short (a killed helper)
                gone = 0
                for d, dirs, files in os.walk(root):
                    if d == root:
                        dirs[:] = [x for x in dirs if x != ".orch"]
                    for f in files:
                        if f.startswith(".") and f.endswith(".orch-tmp"):
                            os.unlink(os.path.join(d, f))
                            gone += 1
                results.append({"ok": True, "removed": gone})
            elif kind == "verify":
                results.append(verify(root, op))
            elif kind == "stat":
                p = os.path.join(root, op["path"])
                results.append({"ok": True, "stat": stat_of(p) if os.path.lexists(p) else None})
            else:
                results.append({"error": "unknown op %r" % kind})
        except OSError as e:
            results.append({"error": "%s: %s" % (op.get("path"), e.strerror or e)})
    if req.get("generation") is not None:
        generation(root, req["generation"])
    lock(root, bool(req.get("hold")))
    return {"results": results}
def fence(me):
    # orch-sync-helper: the mark another helper finds in this process's command line.
    # End older helpers of this same sync before doing anything. The laptop side runs one
    # owner per sync, so another one alive is left over from a killed sync or a dropped
    # connection, and a request it still holds (waiting for the lock) must never be applied
    # after this session's reconcile (a stale batch: orphan folders, stale files).
    if not me or not os.path.isdir("/proc"):
        return
    mark, tail = b"orch-sync-helper", b"\0" + me.encode() + b"\0"
    ended = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            if cmd.endswith(tail) and mark in cmd:
                os.kill(int(pid), 9)
                ended.append(pid)
        except OSError:
            pass
    for pid in ended:  # gone (or a zombie) before this helper says hello
        for _ in range(200):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                        break
            except OSError:
                break
            time.sleep(0.01)
fence(sys.argv[1] if len(sys.argv) > 1 else "")
send({"hello": 1})
while True:
    hdr = R.read(4)
    if len(hdr) < 4:
        break
    req = json.loads(readn(struct.unpack(">I", hdr)[0]))
    send(handle(req))
"""


def helper_command(python: str = "python3", sync_id: str = "") -> str:
    """The remote command starting the helper (no login shell, no file left on the remote).
    With `sync_id` (the manifest's), it first ends older helpers of the same sync."""
    command = f"{shlex.quote(python)} -u -c {shlex.quote(HELPER_SOURCE)}"
    return f"{command} {shlex.quote(sync_id)}" if sync_id else command
