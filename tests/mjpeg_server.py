"""A real HTTP MJPEG camera for tests: `multipart/x-mixed-replace` JPEG parts over a local socket.

A test can stop it (every connection is cut and the port closes), start it again on the same
port, and stall it (the connections open at that moment stay open but get no more bytes, as a
hung camera does; new connections stream normally). Frames carry their number in their pixels.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "edgefaceframe"
BITS = 16  # numbers up to 65535, as two rows of 8 black or white squares
SQUARE = 20
WIDTH, HEIGHT = 160, 120


def numbered_image(number: int) -> np.ndarray:
    """A 160×120 BGR picture whose squares spell `number` in binary (white = 1); survives JPEG."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(BITS):
        if number >> bit & 1:
            row, column = divmod(bit, 8)
            pixels[row * SQUARE : (row + 1) * SQUARE, column * SQUARE : (column + 1) * SQUARE] = 255
    return pixels


def read_number(pixels: np.ndarray) -> int:
    """The number that numbered_image() drew, read back from the centre of each square."""
    number = 0
    for bit in range(BITS):
        row, column = divmod(bit, 8)
        centre = pixels[row * SQUARE + 5 : (row + 1) * SQUARE - 5, column * SQUARE + 5 : (column + 1) * SQUARE - 5]
        number |= int(centre.mean() > 127) << bit
    return number


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        """Streams numbered JPEG parts until the server stops, or freezes if the stream stalls."""
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        camera = self.server.camera
        frozen = camera.connect(self.connection)
        try:
            while not camera.stopped.is_set() and not frozen.is_set():
                self.wfile.write(camera.next_part())
                self.wfile.flush()
                time.sleep(1 / camera.fps)
            if frozen.is_set():
                self._hold_until_client_leaves()
        except OSError:
            pass  # the client went away (or the server cut the connection)
        finally:
            camera.disconnect(self.connection)

    def _hold_until_client_leaves(self) -> None:
        """Keeps the connection open, sending nothing, until the client closes it or the server stops."""
        while not self.server.camera.stopped.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and not self.connection.recv(4096):
                return

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read the camera's counters, not an access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    camera: MjpegServer


class MjpegServer:
    """An MJPEG camera on 127.0.0.1 at `fps` frames a second; `url` is where to read it."""

    def __init__(self, fps: float = 30.0) -> None:
        self.fps = fps
        self.port = 0
        self.frames_sent = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Event] = {}
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> MjpegServer:
        """Listens (on the same port as before, after a stop) and serves in a thread."""
        self.stopped.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.camera = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Dies as a camera does: the port closes and every open connection is cut."""
        self.stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self._connections:
                _cut(connection)

    def stall(self) -> None:
        """The connections open now stop getting bytes but stay open; new ones stream normally."""
        with self._lock:
            for frozen in self._connections.values():
                frozen.set()

    def connect(self, connection: socket.socket) -> threading.Event:
        """Registers a client connection; the event returned is set when that connection stalls."""
        frozen = threading.Event()
        with self._lock:
            self._connections[connection] = frozen
        return frozen

    def disconnect(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def next_part(self) -> bytes:
        """The next multipart part: boundary, headers and a JPEG of the next frame number."""
        with self._lock:
            number = self.frames_sent
            self.frames_sent += 1
        jpeg = cv2.imencode(".jpg", numbered_image(number))[1].tobytes()
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
        return head.encode() + jpeg + b"\r\n"


def _cut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the client
