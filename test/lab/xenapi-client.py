"""Drives a lab pool with Debian's python3-os-xenapi XML-RPC XenAPI session: a client nobody in this project wrote.

Run by test/lab/lab-xmlrpc.test.ts with Debian's /usr/bin/python3:
    xenapi-client.py URL USER PASSWORD VM_NAME
At two checkpoints it prints `READY {json}` and waits for a line `go` on stdin (the test looks at the pool with the
xen-api node client meanwhile); at the end it prints `RESULT {json}`, one document with everything it saw. Values
keep their XML-RPC type visible: <double> as {"$double": x}, <dateTime.iso8601> as {"$datetime": text}, <int>/<i4>
as {"$int": n}; strings (XAPI's ints included), booleans, arrays and structs stay as they are.
"""

import hashlib
import io
import json
import re
import sys
import tarfile
import time
import urllib.parse
import urllib.request
import xmlrpc.client

from os_xenapi.client import XenAPI

CLASSES = ["pool", "host", "SR", "PBD", "VDI", "VBD", "VM", "VIF", "network", "task", "message"]
EVENT_DEADLINE_SECONDS = 120


def wire(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {"$int": value}
    if isinstance(value, float):
        return {"$double": value}
    if isinstance(value, xmlrpc.client.DateTime):
        return {"$datetime": value.value}
    if isinstance(value, list):
        return [wire(item) for item in value]
    if isinstance(value, dict):
        return {key: wire(item) for key, item in value.items()}
    return value


def checkpoint(step, data):
    print("READY " + json.dumps(dict(data, step=step)), flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("driver stopped at %s: the test answered %r" % (step, line))


def failure_of(call):
    try:
        call()
    except XenAPI.Failure as failure:
        return [str(item) for item in failure.details]
    return None


def event_from(session, classes, token, timeout):
    # `from` is a Python keyword: the dispatcher is reached through getattr.
    return getattr(session.xenapi.event, "from")(classes, token, timeout)


def wait_for_events(session, classes, token, wanted):
    """event.from until every (class, operation, ref) in `wanted` was seen; returns (events seen, new token)."""
    seen = []
    missing = set(wanted)
    deadline = time.monotonic() + EVENT_DEADLINE_SECONDS
    while missing:
        if time.monotonic() > deadline:
            raise SystemExit("events never seen: %r" % sorted(missing))
        answer = event_from(session, classes, token, 5.0)
        token = answer["token"]
        for event in answer["events"]:
            seen.append(event)
            missing.discard((event["class"], event["operation"], event["ref"]))
    return seen, token, answer


def download(url, path, query):
    with urllib.request.urlopen("%s%s?%s" % (url, path, urllib.parse.urlencode(query))) as response:
        return response.status, response.read()


def describe_xva(data):
    """The tar's members in order, read by Python's tarfile, and the objects of its ova.xml, read by Python's XML-RPC parser.

    XAPI numbers the objects of an export (`Ref:<n>`) from a counter that lives as long as the process, so two exports of
    one VM differ there: `canonical` renames them in order of first appearance, and gives each member's size and SHA-256
    under its renamed name.
    """
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = [(member.name, tar.extractfile(member).read()) for member in tar.getmembers()]
    ova = members[0][1].decode("utf-8")
    ids = {}
    export_id = re.compile(r"(?<![A-Za-z])Ref:\d+(?![\w-])")
    for found in export_id.findall(ova):
        ids.setdefault(found, "Ref:#%d" % len(ids))

    def rename(text):
        return export_id.sub(lambda match: ids.get(match.group(0), match.group(0)), text)

    (header,), _ = xmlrpc.client.loads("<methodResponse><params><param>%s</param></params></methodResponse>" % ova)
    objects = header["objects"]
    vms = [obj["snapshot"] for obj in objects if obj["class"] == "VM"]
    canonical = []
    for index, (name, body) in enumerate(members):
        if index == 0:
            body = rename(body.decode("utf-8")).encode("utf-8")
        canonical.append([rename(name), len(body), hashlib.sha256(body).hexdigest()])
    return {
        "members": [name for name, _ in members],
        "canonical": canonical,
        "ova_classes": sorted({obj["class"] for obj in objects}),
        "ova_vm_names": [vm["name_label"] for vm in vms],
        "ova_vm_uuids": [vm["uuid"] for vm in vms],
    }


def main():
    url, user, password, vm_name = sys.argv[1:5]
    result = {}

    session = XenAPI.Session(url + "/")
    session.xenapi.login_with_password(user, password)
    result["api_version"] = session.API_version
    result["records"] = {cls: wire(getattr(session.xenapi, cls).get_all_records()) for cls in CLASSES}
    checkpoint("records", {})

    vm = session.xenapi.VM.get_by_name_label(vm_name)[0]
    token = event_from(session, ["vm", "vdi", "vbd"], "", 0.0)["token"]
    task = session.xenapi.Async.VM.snapshot(vm, "xmlrpc-proof")
    task_token = ""
    deadline = time.monotonic() + EVENT_DEADLINE_SECONDS
    while session.xenapi.task.get_status(task) == "pending":
        if time.monotonic() > deadline:
            raise SystemExit("task %s still pending" % task)
        task_token = event_from(session, ["task/" + task], task_token, 5.0)["token"]
    task_record = session.xenapi.task.get_record(task)
    result["task"] = wire(task_record)
    snapshot = re.fullmatch(r"<value>(OpaqueRef:[^<]+)</value>", task_record["result"]).group(1)
    session.xenapi.task.destroy(task)
    added, token, answer = wait_for_events(session, ["vm", "vdi", "vbd"], token, [("vm", "add", snapshot)])
    result["snapshot"] = snapshot
    result["snapshot_record"] = wire(session.xenapi.VM.get_record(snapshot))
    result["events_added"] = wire(added)
    result["valid_ref_counts"] = wire(answer["valid_ref_counts"])

    status, data = download(url, "/export", {"ref": snapshot, "session_id": session.handle})
    result["export"] = dict(describe_xva(data), status=status, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    checkpoint("snapshot", {"snapshot": snapshot})

    # XAPI's VM.destroy keeps the disks: the snapshot's VDIs are destroyed one by one.
    vbds = session.xenapi.VM.get_VBDs(snapshot)
    disks = [session.xenapi.VBD.get_VDI(vbd) for vbd in vbds if session.xenapi.VBD.get_type(vbd) == "Disk"]
    session.xenapi.VM.destroy(snapshot)
    for vdi in disks:
        session.xenapi.VDI.destroy(vdi)
    wanted = [("vm", "del", snapshot)] + [("vdi", "del", vdi) for vdi in disks] + [("vbd", "del", vbd) for vbd in vbds]
    deleted, token, _ = wait_for_events(session, ["vm", "vdi", "vbd"], token, wanted)
    result["destroyed_disks"] = disks
    result["destroyed_vbds"] = vbds
    result["events_deleted"] = wire(deleted)

    result["errors"] = {
        "unknown_method": failure_of(lambda: session.xenapi.VM.no_such_method(vm)),
        "parameter_count": failure_of(lambda: session.xenapi.VM.get_record()),
        "bad_login": failure_of(lambda: XenAPI.Session(url + "/").xenapi.login_with_password(user, password + "-wrong")),
        "handle_invalid": failure_of(lambda: session.xenapi.VM.get_record("OpaqueRef:no-such-vm")),
    }
    # This client never raises SESSION_INVALID: it logs in again and retries. The raw answer shows what the pool said,
    # and a session killed under the client shows the retry working.
    result["errors"]["bad_session_raw"] = wire(getattr(session, "VM.get_all")("OpaqueRef:no-such-session"))
    before = session.handle
    getattr(session, "session.logout")(before)
    pools = session.xenapi.pool.get_all()
    result["relogin"] = {"new_session": session.handle != before, "pools": len(pools)}

    session.xenapi.session.logout()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
