// The small python3 programs the policy matrix runs inside endpoint namespaces.

/** Echo servers on TCP and UDP ports 80 and 81; prints "ready" once all four are bound. */
export const SERVER = `
import socket, threading
def echo(c):
    try:
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
def tcp(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def udp(u):
    while True:
        d, a = u.recvfrom(4096)
        u.sendto(d, a)
for port in (80, 81):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128)
    threading.Thread(target=tcp, args=(s,), daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
    threading.Thread(target=udp, args=(u,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

/**
 * Tries every target at once and prints one JSON object: key → whether the echo came back.
 * Arguments: timeout in seconds, the UDP source port, then targets as KEY,PROTO,IP,PORT. TCP:
 * one connect per target, each in its own thread (the SYN is not retransmitted within a
 * second). UDP: one socket on the given port for all targets, each sent to twice, half the
 * timeout apart, so that one lost datagram is not read as a policy drop. The caller picks a new
 * UDP port for every run: a reused source port could meet a flow still tracked from when the
 * policy allowed it.
 */
export const PROBE = `
import json, socket, sys, threading, time
timeout = float(sys.argv[1])
udp_port = int(sys.argv[2])
result = {}
def tcp(key, ip, port):
    ok = False
    s = socket.socket()
    try:
        s.settimeout(timeout)
        s.connect((ip, port)); s.sendall(b"x"); ok = s.recv(1) == b"x"
    except OSError:
        ok = False
    finally:
        s.close()
    result[key] = ok
threads = []
udp = {}
for arg in sys.argv[3:]:
    key, proto, ip, port = arg.split(",")
    if proto == "tcp":
        t = threading.Thread(target=tcp, args=(key, ip, int(port)))
        t.start(); threads.append(t)
    else:
        udp[(ip, int(port))] = key
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", udp_port))
answered = set()
for _ in range(2):
    for addr in udp:
        if addr not in answered:
            try:
                u.sendto(b"x", addr)
            except OSError:
                pass
    deadline = time.monotonic() + timeout / 2
    while len(answered) < len(udp):
        left = deadline - time.monotonic()
        if left <= 0: break
        u.settimeout(left)
        try:
            d, addr = u.recvfrom(16)
        except socket.timeout:
            break
        except OSError:
            continue
        if d == b"x" and addr in udp: answered.add(addr)
u.close()
for addr, key in udp.items():
    result[key] = addr in answered
for t in threads:
    t.join()
print(json.dumps(result), flush=True)
`;

/** A long-lived TCP connection exchanging a byte every 100 ms; prints the running count. */
export const STREAM = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
n = 0
while True:
    s.sendall(b"x")
    if s.recv(1) != b"x": break
    n += 1
    print("n", n, flush=True)
    time.sleep(0.1)
`;
