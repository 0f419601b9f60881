#!/usr/bin/env python3
"""Writes the RTP pcaps the sipp scenarios replay with `play_pcap_audio`.

Stdlib only. Each file is a classic pcap (link type Ethernet) of
Ethernet/IPv4/UDP/RTP frames from 10.0.0.2:40000 to 10.0.0.1:40002; sipp keeps
only the UDP payload and the timing, and sends it from its own media port to the
media address of the 200 OK (so addresses here do not matter).

Usage: python3 tests/sipp/make_pcaps.py [OUT_DIR]   (default: tests/data/pcap)

Files:
  dtmf_1_rfc4733.pcap   RFC 4733 telephone-event, key 1, PT 101: 6 packets 20 ms
                        apart (marker on the first, one timestamp, duration
                        160..960), then the end packet (E bit, duration 1120)
                        sent 3 times.  Sequence numbers increase on every packet.
  dtmf_12_rfc4733.pcap  keys 1 then 2 (two events, two timestamps, 200 ms apart).
  dtmf_1_rfc4733_pt96.pcap  as dtmf_1_rfc4733.pcap with PT 96 (for offers at 96).
  dtmf_selfservice_rfc4733.pcap  a self-service caller, PT 101, keys in groups that
                        start at chosen times (seconds from the first packet; each
                        group as in dtmf_12_rfc4733.pcap, keys 200 ms apart):
                          0.0 "3"      main menu: account services
                          5.0 "1010#"  customer ID (after the ID prompt ended)
                         10.0 "5555"   PIN (after the PIN prompt ended)
                         14.0 "1"      account menu: balance (while it plays)
                        RTP timestamps follow the send times (8 kHz), so the
                        receiver sees one event per key.  Used by
                        tests/sipp/selfservice_balance.xml, whose timing notes
                        explain the times.
  dtmf_1_inband.pcap    PCMU (PT 0): 300 ms silence, 100 ms DTMF "1"
                        (697 Hz + 1209 Hz, each at -10 dBm0), 300 ms silence;
                        20 ms packets, marker on the first.
  dtmf_12_inband.pcap   as above with "1", 100 ms pause, "2".
  silence_pcmu_60s.pcap 60 s of PCMU silence (a caller who says and presses nothing
                        but whose phone keeps sending media).
  dtmf_0_rfc4733.pcap   as dtmf_1_rfc4733.pcap with key 0 (the demo's "agent" key).
  voice_caller.pcap     PCMU (PT 0) of prompts/en/order-delivered.wav: the caller's
                        "voice" in bridge tests, a prompt the agent flows never play, so
                        finding it in the agent's received audio proves the relay.
  voice_agent.pcap      PCMU of prompts/en/appointment-confirmed.wav: the agent's voice,
                        looked for in the audio the caller receives.
"""
import wave
import math
import os
import struct
import sys

SRC_IP = bytes([10, 0, 0, 2])
DST_IP = bytes([10, 0, 0, 1])
SRC_PORT, DST_PORT = 40000, 40002
SSRC_EVENTS = 0x5A17E401
SSRC_AUDIO = 0x5A17A0D1
PT_PCMU, PT_EVENT = 0, 101

# ---------------------------------------------------------------- pcap framing

def ip_checksum(header: bytes) -> int:
    s = 0
    for i in range(0, len(header), 2):
        s += (header[i] << 8) | header[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp_checksum(src, dst, udp: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    c = ip_checksum(data)
    return c or 0xFFFF


def frame(payload: bytes, ident: int) -> bytes:
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", SRC_PORT, DST_PORT, udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", udp_checksum(SRC_IP, DST_IP, udp)) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0xB8, 20 + udp_len, ident & 0xFFFF, 0x4000,
                     64, 17, 0, SRC_IP, DST_IP)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000001" "020000000002") + b"\x08\x00"
    return eth + ip + udp


def write_pcap(path, packets):
    """packets: list of (time_seconds, rtp_bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        base = 1_700_000_000
        for i, (t, rtp) in enumerate(packets):
            data = frame(rtp, 0x1000 + i)
            sec = base + int(t)
            usec = int(round((t - int(t)) * 1e6))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
            f.write(data)


def rtp(pt, seq, ts, ssrc, payload, marker=False):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload

# ---------------------------------------------------------------- G.711 u-law

def linear_to_ulaw(sample: int) -> int:
    """ITU-T G.711 u-law encoder for a 16-bit linear sample."""
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, CLIP) + BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not (sample & mask):
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa)) & 0xFF


# 0 dBm0 in G.711 u-law: a sine whose peak is 3.17 dB below the maximum
# (G.711: the digital milliwatt peaks at 8031 of 8159 on the 14-bit scale).
PEAK_0DBM0 = 32767 * 10 ** (-3.17 / 20)


def tone_samples(freqs, n, dbm0, start=0):
    amp = PEAK_0DBM0 * 10 ** (dbm0 / 20)
    out = []
    for i in range(start, start + n):
        v = sum(amp * math.sin(2 * math.pi * f * i / 8000) for f in freqs)
        out.append(int(round(v)))
    return out


DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477),
        "4": (770, 1209), "5": (770, 1336), "6": (770, 1477),
        "7": (852, 1209), "8": (852, 1336), "9": (852, 1477),
        "*": (941, 1209), "0": (941, 1336), "#": (941, 1477)}
EVENT = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}

# ---------------------------------------------------------------- generators

def rfc4733(keys, pt=PT_EVENT, gap_s=0.2):
    """Events for each key: 6 updates 20 ms apart, then 3 end packets."""
    return rfc4733_groups([(0.0, keys)], pt=pt, gap_s=gap_s)


def rfc4733_groups(groups, pt=PT_EVENT, gap_s=0.2):
    """groups: list of (start_seconds, keys), start times increasing. Each group is
    sent as by rfc4733(keys) from its start time on; one SSRC and one sequence
    throughout, the RTP timestamp of each event is its send time at 8 kHz."""
    packets, seq, t = [], 1000, 0.0
    for start, keys in groups:
        if start < t:
            raise ValueError(f"group {keys!r} at {start}s overlaps the previous one (ends {t:.3f}s)")
        t = start
        seq = _events(packets, keys, pt, gap_s, seq, t)
        t = packets[-1][0]
    return packets


def _events(packets, keys, pt, gap_s, seq, t):
    """Appends the events for `keys` from time `t`; returns the next sequence number."""
    for key in keys:
        ts = 16000 + int(round(t * 8000))
        code = EVENT[key]
        for k in range(1, 7):
            payload = struct.pack("!BBH", code, 10, 160 * k)  # E=0, volume 10 (-10 dBm0)
            packets.append((t, rtp(pt, seq, ts, SSRC_EVENTS, payload, marker=(k == 1))))
            seq += 1
            t += 0.020
        end = struct.pack("!BBH", code, 0x80 | 10, 160 * 7)
        for r in range(3):
            packets.append((t + r * 0.001, rtp(pt, seq, ts, SSRC_EVENTS, end)))
            seq += 1
        t += 0.020 + gap_s
    return seq


def pcmu_stream(segments):
    """segments: list of (key or None, milliseconds). 20 ms packets."""
    samples = []
    for key, ms in segments:
        n = ms * 8
        if key is None:
            samples += [0] * n
        else:
            samples += tone_samples(DTMF[key], n, -10.0)
    assert len(samples) % 160 == 0
    packets = []
    for i in range(len(samples) // 160):
        chunk = bytes(linear_to_ulaw(s) for s in samples[i * 160:(i + 1) * 160])
        packets.append((i * 0.020, rtp(PT_PCMU, 2000 + i, 48000 + 160 * i, SSRC_AUDIO, chunk,
                                       marker=(i == 0))))
    return packets


def silence(seconds):
    frame_bytes = bytes([linear_to_ulaw(0)]) * 160
    return [(i * 0.020, rtp(PT_PCMU, 3000 + i, 96000 + 160 * i, SSRC_AUDIO, frame_bytes, marker=(i == 0)))
            for i in range(seconds * 50)]


def wav_voice(rel_path, lead_ms=200):
    """A prompt WAV (8 kHz mono 16-bit) as a PCMU stream, after `lead_ms` of silence."""
    here = os.path.dirname(os.path.abspath(__file__))
    with wave.open(os.path.join(here, "..", "..", rel_path), "rb") as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        raw = w.readframes(w.getnframes())
    samples = [0] * (lead_ms * 8) + list(struct.unpack("<%dh" % (len(raw) // 2), raw))
    samples += [0] * ((-len(samples)) % 160)
    packets = []
    for i in range(len(samples) // 160):
        chunk = bytes(linear_to_ulaw(x) for x in samples[i * 160:(i + 1) * 160])
        packets.append((i * 0.020, rtp(PT_PCMU, 4000 + i, 160000 + 160 * i, SSRC_AUDIO, chunk,
                                       marker=(i == 0))))
    return packets


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "pcap")
    os.makedirs(out, exist_ok=True)
    outputs = {
        "dtmf_1_rfc4733.pcap": rfc4733("1"),
        "dtmf_12_rfc4733.pcap": rfc4733("12"),
        "dtmf_1_rfc4733_pt96.pcap": rfc4733("1", pt=96),
        "dtmf_selfservice_rfc4733.pcap": rfc4733_groups(
            [(0.0, "3"), (5.0, "1010#"), (10.0, "5555"), (14.0, "1")]),
        "dtmf_1_inband.pcap": pcmu_stream([(None, 300), ("1", 100), (None, 300)]),
        "dtmf_12_inband.pcap": pcmu_stream([(None, 300), ("1", 100), (None, 100), ("2", 100), (None, 300)]),
        "silence_pcmu_60s.pcap": silence(60),
        "dtmf_0_rfc4733.pcap": rfc4733("0"),
        "voice_caller.pcap": wav_voice("prompts/en/order-delivered.wav"),
        "voice_agent.pcap": wav_voice("prompts/en/appointment-confirmed.wav"),
    }
    for name, packets in outputs.items():
        path = os.path.join(out, name)
        write_pcap(path, packets)
        print(f"{os.path.relpath(path)}: {len(packets)} packets")


if __name__ == "__main__":
    main()
