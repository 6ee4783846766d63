"""A database client written the ordinary way, for bench/dbdoor.py: psycopg with libpq's defaults
(whatever the DSN says, nothing more: no timeouts, no keep-alive tuning), autocommit inserts one
after another, and on any error it closes the connection, waits a moment and connects again.

Each write has a fresh key. Every line on stdout is one attempt:
    <unix time> ok <key> <server address>      acknowledged
    <unix time> err <key> <error class>        failed, or unknown (the commit may have happened)

Run: python bench/ordinary_client.py DSN KIND
"""

import sys
import time
import uuid

import psycopg


def main() -> None:
    dsn, kind = sys.argv[1], sys.argv[2]
    conn = None
    while True:
        key = uuid.uuid4().hex
        try:
            if conn is None:
                conn = psycopg.connect(dsn, autocommit=True)
            server = conn.execute("INSERT INTO bench_door_writes (key, kind) VALUES (%s, %s) "
                                  "RETURNING host(inet_server_addr())", (key, kind)).fetchone()[0]
            print(f"{time.time():.3f} ok {key} {server}", flush=True)
            time.sleep(0.02)
        except psycopg.Error as e:
            print(f"{time.time():.3f} err {key} {type(e).__name__}", flush=True)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)


if __name__ == "__main__":
    main()
