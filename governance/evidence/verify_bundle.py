#!/usr/bin/env python3
"""Verify a CanaryHub evidence bundle offline, with nothing but Python's standard library.

    python3 verify_bundle.py BUNDLE.zip      (or the folder it was extracted to)

Checks that every file listed in manifest.json has the SHA-256 recorded there and that no file
was added, then that the audit segment is intact: each event in audit/events.jsonl rehashes to
its recorded hash, the hashes in audit/chain.jsonl link each event to the one before it without
a gap, every event sits in that chain at its sequence number, and the chain ends at the head in
audit/head.json. Exit status 0 when everything verifies, 1 otherwise (each problem is printed).
"""

import hashlib
import json
import os
import sys
import zipfile


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_digest(event):
    # The same definition as CanaryHub's governance.audit.services.event_digest.
    body = canonical_json({
        "seq": event["seq"], "created_at": event["created_at"], "actor_id": event["actor_id"],
        "actor_name": event["actor_name"], "action": event["action"], "object_type": event["object_type"],
        "object_id": event["object_id"], "payload": event["payload"], "prev_hash": event["prev_hash"],
    })
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Bundle:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path) if os.path.isfile(path) else None
        self.root = path

    def names(self):
        if self.zip is not None:
            return [n for n in self.zip.namelist() if not n.endswith("/")]
        found = []
        for folder, _, files in os.walk(self.root):
            for name in files:
                found.append(os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/"))
        return found

    def read(self, name):
        if self.zip is not None:
            return self.zip.read(name)
        with open(os.path.join(self.root, *name.split("/")), "rb") as handle:
            return handle.read()


def verify(path):
    problems = []
    bundle = Bundle(path)
    manifest = json.loads(bundle.read("manifest.json"))
    listed = manifest["files"]
    for name, entry in sorted(listed.items()):
        try:
            data = bundle.read(name)
        except (KeyError, OSError):
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{name}: SHA-256 does not match the manifest")
    for name in bundle.names():
        if name != "manifest.json" and name not in listed:
            problems.append(f"{name}: not listed in the manifest")

    chain = [json.loads(line) for line in bundle.read("audit/chain.jsonl").decode("utf-8").splitlines() if line]
    by_seq = {}
    previous = None
    for link in chain:
        if previous is not None:
            if link["seq"] != previous["seq"] + 1:
                problems.append(f"audit chain: gap after event {previous['seq']}")
            if link["prev_hash"] != previous["hash"]:
                problems.append(f"audit chain: event {link['seq']} does not link to event {previous['seq']}")
        by_seq[link["seq"]] = link
        previous = link
    head = json.loads(bundle.read("audit/head.json"))
    if chain and (chain[-1]["seq"] != head["seq"] or chain[-1]["hash"] != head["hash"]):
        problems.append("audit chain: does not end at the recorded head")
    count = 0
    for line in bundle.read("audit/events.jsonl").decode("utf-8").splitlines():
        if not line:
            continue
        event = json.loads(line)
        count += 1
        if event_digest(event) != event["hash"]:
            problems.append(f"audit event {event['seq']}: content does not match its hash")
        link = by_seq.get(event["seq"])
        if link is None or link["hash"] != event["hash"] or link["prev_hash"] != event["prev_hash"]:
            problems.append(f"audit event {event['seq']}: not in the chain at its place")
    return problems, len(listed), count


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    try:
        problems, files, events = verify(argv[1])
    except Exception as exc:  # a damaged archive or manifest is a failed verification
        print(f"FAILED: the bundle cannot be read: {exc}")
        return 1
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    print(f"OK: {files} files match the manifest; {events} audit events verify against the chain")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
