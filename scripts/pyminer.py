#!/usr/bin/env python3
"""A small CPU miner for Stratum V1 pools, standard library only.

It follows what cgminer-family miners do: subscribe, authorize, take set_difficulty and notify,
build the coinbase from coinb1 + extranonce1 + extranonce2 + coinb2, fold the merkle branch, swap the
previous hash back into header order, roll the nonce, and submit shares that meet the pool's target.
It is slow (hashlib), meant for trying a pool out and for tests, not for mining.

    scripts/pyminer.py --url stratum+tcp://127.0.0.1:3333 --user ADDRESS.worker [--shares N] [--blocks N]

It prints one JSON line per event and a summary at the end; exit status 0 when the asked-for
shares and blocks were accepted.
"""
import argparse
import hashlib
import json
import socket
import struct
import sys
import time

DIFF1 = 0xFFFF << 208


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def target_for(difficulty):
    return int(DIFF1 / difficulty)


def compact_to_target(nbits):
    exponent, mantissa = nbits >> 24, nbits & 0x7FFFFF
    return mantissa << (8 * (exponent - 3)) if exponent > 3 else mantissa >> (8 * (3 - exponent))


class Pool:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.file = self.sock.makefile("rwb")
        self.next_id = 1
        self.pending = []

    def send(self, method, params):
        msg_id = self.next_id
        self.next_id += 1
        self.file.write((json.dumps({"id": msg_id, "method": method, "params": params}) + "\n").encode())
        self.file.flush()
        return msg_id

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("pool closed the connection")
        return json.loads(line)

    def call(self, method, params):
        msg_id = self.send(method, params)
        while True:
            msg = self.read()
            if msg.get("id") == msg_id and "method" not in msg:
                return msg
            self.pending.append(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="x")
    ap.add_argument("--shares", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    host, port = args.url.replace("stratum+tcp://", "").rsplit(":", 1)
    pool = Pool(host, int(port))

    sub = pool.call("mining.subscribe", ["pyminer/1.0"])
    extranonce1 = bytes.fromhex(sub["result"][1])
    en2_size = sub["result"][2]
    auth = pool.call("mining.authorize", [args.user, args.password])
    if auth.get("result") is not True:
        print(json.dumps({"event": "authorize-failed", "answer": auth}))
        return 1
    difficulty, job, en2 = 1.0, None, 0
    accepted = rejected = blocks = 0
    deadline = time.time() + args.timeout

    def take(msg):
        nonlocal difficulty, job
        if msg.get("method") == "mining.set_difficulty":
            difficulty = msg["params"][0]
        elif msg.get("method") == "mining.notify":
            job = msg["params"]
            print(json.dumps({"event": "job", "id": job[0], "clean": job[8]}), flush=True)

    while (accepted < args.shares or blocks < args.blocks) and time.time() < deadline:
        while pool.pending:
            take(pool.pending.pop(0))
        if job is None:
            take(pool.read())
            continue
        job_id, prev, coinb1, coinb2, branch, version, nbits, ntime, _clean = job
        en2 += 1
        extranonce2 = en2.to_bytes(en2_size, "big")
        coinbase = bytes.fromhex(coinb1) + extranonce1 + extranonce2 + bytes.fromhex(coinb2)
        root = sha256d(coinbase)
        for node in branch:
            root = sha256d(root + bytes.fromhex(node))
        prev_bytes = b"".join(bytes.fromhex(prev)[i:i + 4][::-1] for i in range(0, 32, 4))
        head = struct.pack("<I", int(version, 16)) + prev_bytes + root + struct.pack("<II", int(ntime, 16), int(nbits, 16))
        share_target = target_for(difficulty)
        network_target = compact_to_target(int(nbits, 16))
        for nonce in range(0, 1 << 20):
            h = int.from_bytes(sha256d(head + struct.pack("<I", nonce)), "little")
            if h <= share_target:
                answer = pool.call("mining.submit", [args.user, job_id, extranonce2.hex(), ntime, "%08x" % nonce])
                is_block = h <= network_target
                ok = answer.get("result") is True
                accepted += ok
                rejected += not ok
                blocks += ok and is_block
                print(json.dumps({"event": "share", "accepted": ok, "block": is_block, "error": answer.get("error")}), flush=True)
                break
    print(json.dumps({"event": "summary", "accepted": accepted, "rejected": rejected, "blocks": blocks}), flush=True)
    return 0 if accepted >= args.shares and blocks >= args.blocks else 1


if __name__ == "__main__":
    sys.exit(main())
