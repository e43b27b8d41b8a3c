"""The remote-command stream protocols of pods/exec and pods/attach over WebSocket (pure).

As k8s.io/apimachinery/pkg/util/remotecommand and k8s.io/kubelet/pkg/cri/streaming/remotecommand speak
them: each binary WebSocket message is one byte of channel (0 stdin, 1 stdout, 2 stderr, 3 error,
4 resize) and the data. The error channel carries the command's end: in v1 (channel.k8s.io) plain text,
from v2 on a metav1.Status, with the exit code in details.causes[reason=ExitCode] for a non-zero exit
(v4's shape; kubectl reads it to exit with the same code). v5 adds channel 255: `[255, N]` closes
stream N (the client's stdin EOF), which is how kubectl's WebSocket executor ends stdin. The
base64.channel.k8s.io variants send text frames: the channel as an ASCII digit, then base64 data.
pods/portforward (portforward.k8s.io / v4.channel.k8s.io over WebSocket) pairs a data and an error
channel per port, each starting with the port number as two little-endian bytes.
"""

from __future__ import annotations

import base64
import json

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: [255, channel] half-closes a stream

# Preferred first (kubelet's SupportedStreamingProtocols order, newest first).
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io", "base64.channel.k8s.io", "v4.base64.channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


def negotiate(offered: list[str], supported: tuple[str, ...] = EXEC_PROTOCOLS) -> str | None:
    """The protocol to speak: the first we support in the client's order (Sec-WebSocket-Protocol)."""
    for proto in offered:
        if proto in supported:
            return proto
    return None


def is_base64(protocol: str) -> bool:
    return "base64" in protocol


def encode(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One message on `channel`: bytes for the binary protocols, str for the base64 ones."""
    if is_base64(protocol):
        return str(channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


def decode(protocol: str, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, data) of a received message; None for an empty or unreadable one."""
    if isinstance(message, str):
        if not message or not message[0].isdigit():
            return None
        try:
            return int(message[0]), base64.b64decode(message[1:])
        except ValueError:
            return None
    if not message:
        return None
    return message[0], bytes(message[1:])


def exit_status(protocol: str, exit_code: int, argv: list[str]) -> bytes:
    """What the error channel carries when the command ended with `exit_code` (kubelet's
    remotecommand.writeStatus / v4WriteStatusFunc)."""
    if exit_code == 0:
        if protocol in ("channel.k8s.io", "base64.channel.k8s.io"):
            return b""
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    message = f"command terminated with non-zero exit code: error executing command {argv}: " \
              f"exit status {exit_code}"
    if protocol in ("channel.k8s.io", "base64.channel.k8s.io"):
        return message.encode()
    return json.dumps({
        "metadata": {}, "status": "Failure", "message": message, "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }).encode()


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> bytes:
    """An error-channel Status for a command that could not be run at all."""
    return json.dumps({"metadata": {}, "status": "Failure", "message": message, "reason": reason,
                       "code": code}).encode()


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) of a resize message: JSON {"Width": W, "Height": H}."""
    try:
        size = json.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    return (width, height) if width > 0 and height > 0 else None
