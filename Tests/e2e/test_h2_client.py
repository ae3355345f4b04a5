"""Python's `h2` library as an HTTP/2 client (prior knowledge, several concurrent streams on one
connection): every stream gets its answer and every span arrives."""
import json
import socket

import h2.config
import h2.connection
import h2.events


def span(i):
    return {"traceId": format(0xABC000 + i, "032x"), "id": format(0x100 + i, "016x"), "name": f"op-{i}",
            "timestamp": 1700000000000000 + i, "duration": 5, "localEndpoint": {"serviceName": "h2-client"}}


def test_concurrent_streams_on_one_connection(fresh):
    sock = socket.create_connection(("127.0.0.1", fresh.port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    for i in range(8):
        body = json.dumps([span(i)]).encode()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/api/v2/spans"), (":scheme", "http"),
                                (":authority", f"127.0.0.1:{fresh.port}"), ("content-type", "application/json"),
                                ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)
        streams[sid] = None
    sock.sendall(conn.data_to_send())
    done = 0
    while done < len(streams):
        data = sock.recv(65536)
        assert data, "server closed the connection early"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                streams[event.stream_id] = dict(event.headers)[b":status"]
            elif isinstance(event, h2.events.StreamEnded):
                done += 1
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    assert set(streams.values()) == {b"202"}
    got = fresh.wait_for_spans(8)
    assert sorted(s["name"] for s in got) == sorted(f"op-{i}" for i in range(8))
