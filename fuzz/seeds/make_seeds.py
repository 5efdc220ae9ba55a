#!/usr/bin/env python3
"""Regenerates the seed inputs in fuzz/seeds/<target>/ (run from the repository root).

The seeds are committed; this script documents how they were made. The template seeds are
`getblocktemplate` results rebuilt from the real blocks in tests/data/ (their own transactions,
txids and witness commitment), so the fuzzer starts from templates a node would really send.
Input layouts are described at the top of each target in fuzz/fuzz_targets/.
"""

import hashlib
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


# ---- codec: [cuts | tiny-limit | cut positions... | body] ------------------------------------------

SESSION = [
    '{"id": 1, "method": "mining.configure", "params": [["version-rolling", "minimum-difficulty", "subscribe-extranonce"], {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2, "minimum-difficulty.value": 2048}]}',
    '{"id": 2, "method": "mining.subscribe", "params": ["bmminer/2.0.0", "0badc0de", "stratum.example", 3333]}',
    '{"id": 3, "method": "mining.authorize", "params": ["bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.rig1", "x"]}',
    '{"id": 4, "method": "mining.suggest_difficulty", "params": [512]}',
    '{"id": 5, "method": "mining.extranonce.subscribe", "params": []}',
    '{"params": ["bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.rig1", "1f", "0000000000000001", "6553f100", "1a2b3c4d", "00002000"], "id": 6, "method": "mining.submit"}',
    '{"id":7,"method":"mining.submit","params":["rig1","1f","00000000000000A2","6553F13C","DEADBEEF"]}',
]


def codec(cuts, body, tiny=7):
    return bytes([len(cuts), tiny] + cuts) + body


def codec_seeds():
    crlf = "\r\n".join(SESSION).encode() + b"\r\n"
    write("codec", "session_crlf", codec([], crlf))
    write("codec", "session_chunked", codec([17, 90, 128, 200, 250], "\n".join(SESSION).encode() + b"\n"))
    lines = {
        "cgminer_subscribe": '{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.11.1"]}',
        "subscribe_no_params": '{"id":"s1","method":"mining.subscribe"}',
        "authorize_escaped": '{"id":2,"method":"mining.authorize","params":["addr.rig\\u0031","d=1024"]}',
        "suggest_quoted": '{"id":null,"method":"mining.suggest_difficulty","params":["64.5"]}',
        "configure_only_names": '{"id":"c","method":"mining.configure","params":[["version-rolling"]]}',
        "ping_unknown": '{"id":9,"method":"mining.ping","params":[]}',
        "bad_id": '{"id":[1],"method":"mining.subscribe","params":[]}',
        "bad_params": '{"id":7,"method":"mining.submit","params":["w",1,"00","00000000","00000000"]}',
        "float_id": '{"id":-1.5e3,"method":"mining.extranonce.subscribe"}',
        "not_json": "GET / HTTP/1.1",
    }
    for name, line in lines.items():
        write("codec", name, codec([], line.encode() + b"\n"))
    # A line just over 512 bytes, then a normal one.
    long = '{"id":1,"method":"mining.authorize","params":["' + "w" * 480 + '","x"]}'
    write("codec", "long_line", codec([200], (long + "\n" + SESSION[4] + "\n").encode()))


# ---- submit: 16-byte header, then the body --------------------------------------------------------

CURTIME = 1_700_000_000


def submit_header(job=0, stale=False, session=0, flags=0, mask=0, raw=0, now_raw=False, now=0,
                  exp=0, mant=0, en1=(0xde, 0xad)):
    h = bytes([job | (0x80 if stale else 0), session | flags, mask]) + struct.pack(">I", raw)
    h += bytes([1 if now_raw else 0]) + (struct.pack(">I", now) if now_raw else struct.pack(">hH", now, 0))
    h += bytes([exp, mant, en1[0], en1[1]])
    assert len(h) == 16
    return h


def submit_seeds():
    t = "%08x" % CURTIME
    w = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.rig1"
    texts = {
        # Job 1 (extranonce2 of 8 bytes), every share a block and a share.
        "job1_block": (submit_header(), f"{w}|1|0000000000000001|{t}|deadbeef"),
        "job1_version_rolling": (submit_header(mask=1), f"{w}|1|00000000000000a2|{t}|1a2b3c4d|00002000"),
        "job1_low_difficulty": (submit_header(exp=47), f"{w}|1|ffffffffffffffff|{t}|00000000"),
        "job1_stale": (submit_header(stale=True), f"{w}|1|0000000000000002|{t}|00000001"),
        "job1_ntime_too_new": (submit_header(), f"{w}|1|0000000000000003|{CURTIME + 7201:08x}|00000001"),
        "job1_ntime_too_old": (submit_header(), f"{w}|1|0000000000000003|{CURTIME - 601:08x}|00000001"),
        "job1_bad_extranonce2": (submit_header(), f"{w}|1|00000000|{t}|00000001"),
        "job1_outside_mask": (submit_header(mask=1), f"{w}|1|0000000000000004|{t}|00000001|e0000000"),
        "job1_tight_session": (submit_header(session=1), f"{w}|1|0000000000000005|{t}|00000002"),
        # Job 2 (extranonce2 of 3 bytes, no transactions).
        "job2_block": (submit_header(job=1), f"rig2|2|000001|{t}|CAFEBABE"),
        # Job 0x1f (difficulty-1 network target, extranonce2 of 16 bytes).
        "job1f_share": (submit_header(job=2, exp=2), f"rig3|1f|{'00' * 16}|{t}|12345678"),
        "escaped_job_id": (submit_header(), f'{w}|1"|0000000000000001|{t}|deadbeef'),
    }
    for name, (h, body) in texts.items():
        write("submit", name, h + body.encode())
    # Structured: extranonce2 (16), ntime delta (i16), nonce, version bits.
    body = bytes(range(16)) + struct.pack(">hII", 30, 0xdeadbeef, 0x1fffe000)
    write("submit", "structured_rolling", submit_header(flags=0x18, mask=1) + body)
    write("submit", "structured_upper_tight", submit_header(session=1, flags=0x28) + body)
    write("submit", "structured_now_raw", submit_header(flags=0x08, now_raw=True, now=0xffffff00) + body)


# ---- template: [mode | JSON] or [mode | arbitrary bytes] ------------------------------------------


def varint(b, i):
    n = b[i]
    if n < 0xfd:
        return n, i + 1
    size = {0xfd: 2, 0xfe: 4, 0xff: 8}[n]
    return int.from_bytes(b[i + 1:i + 1 + size], "little"), i + 1 + size


def parse_tx(b, i):
    start = i
    segwit = b[i + 4] == 0 and b[i + 5] == 1
    stripped = bytearray(b[i:i + 4])
    i += 6 if segwit else 4
    body_start = i
    n_in, i = varint(b, i)
    for _ in range(n_in):
        i += 36
        n, i = varint(b, i)
        i += n + 4
    n_out, i = varint(b, i)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(b[i:i + 8], "little")
        n, i2 = varint(b, i + 8)
        outputs.append((value, b[i2:i2 + n]))
        i = i2 + n
    stripped += b[body_start:i]
    if segwit:
        for _ in range(n_in):
            items, i = varint(b, i)
            for _ in range(items):
                n, i = varint(b, i)
                i += n
    stripped += b[i:i + 4]
    i += 4
    data = b[start:i]
    return {"data": data, "txid": sha256d(bytes(stripped))[::-1].hex(),
            "hash": sha256d(data)[::-1].hex(), "outputs": outputs}, i


def template_from_block(raw, bip22=False):
    version, = struct.unpack("<I", raw[:4])
    prev = raw[4:36][::-1].hex()
    curtime, = struct.unpack("<I", raw[68:72])
    bits = "%08x" % struct.unpack("<I", raw[72:76])[0]
    n, i = varint(raw, 80)
    txs = []
    for _ in range(n):
        tx, i = parse_tx(raw, i)
        txs.append(tx)
    coinbase = txs[0]
    script_start = 4 + (2 if coinbase["data"][4] == 0 else 0) + 1 + 36
    slen, j = varint(coinbase["data"], script_start)
    script = coinbase["data"][j:j + slen]
    height = int.from_bytes(script[1:1 + script[0]], "little")
    commitment = [s.hex() for v, s in coinbase["outputs"] if s[:6] == bytes.fromhex("6a24aa21a9ed")]
    t = {
        "capabilities": ["proposal"],
        "version": version,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": prev,
        "transactions": [],
        "coinbaseaux": {},
        "coinbasevalue": sum(v for v, _ in coinbase["outputs"]),
        "longpollid": prev + "42",
        "target": "0000000000000000000000000000000000000000000000000000000000000000",
        "mintime": curtime - 3600,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": curtime,
        "bits": bits,
        "height": height,
    }
    for k, tx in enumerate(txs[1:]):
        entry = {"data": tx["data"].hex(), "depends": [], "fee": 1000 + k, "sigops": 4,
                 "weight": 4 * len(tx["data"])}
        if bip22:
            entry["hash"] = tx["txid"]
        else:
            entry["txid"] = tx["txid"]
            entry["hash"] = tx["hash"]
        t["transactions"].append(entry)
    if commitment and not bip22:
        t["default_witness_commitment"] = commitment[-1]
    return t


def template_seeds():
    data = os.path.join(ROOT, "tests", "data")
    testnet = open(os.path.join(
        data, "testnet_block_000000000000045e0b1660b6445b5e5c5ab63c9a4f956be7e1e69be04fa4497b.raw"), "rb").read()
    old = bytes.fromhex(open(os.path.join(data, "block_13b8a.hex")).read().strip())
    t = template_from_block(testnet)
    write("template", "testnet_segwit", b"\x00" + json.dumps(t, indent=2).encode())
    write("template", "testnet_segwit_config1", b"\x02" + json.dumps(t, separators=(",", ":")).encode())
    t80778 = template_from_block(old, bip22=True)
    write("template", "mainnet_80778_bip22", b"\x04" + json.dumps(t80778).encode())
    empty = dict(t)
    empty["transactions"] = []
    del empty["default_witness_commitment"]
    empty["bits"] = "207fffff"
    empty["height"] = 1
    write("template", "regtest_empty", b"\x06" + json.dumps(empty).encode())
    # Structured mode: any bytes are a template; a few of different lengths.
    for n, seed in [(64, 1), (256, 2), (1024, 3)]:
        x = seed
        out = bytearray([1])
        for _ in range(n):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            out.append(x >> 16 & 0xFF)
        write("template", f"structured_{n}", bytes(out))


if __name__ == "__main__":
    codec_seeds()
    submit_seeds()
    template_seeds()
