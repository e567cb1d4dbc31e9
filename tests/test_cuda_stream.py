"""gvae.kernels.cuda.stream: a stream another library made, as CuPy 14 (``Stream.from_external`` with the
CUDA stream protocol, under the stream's GPU) and CuPy 13 (``ExternalStream``) take it."""
import types

from gvae.kernels.cuda.stream import external_stream


def _cupy(with_from_external):
    log = []

    class Device:
        def __init__(self, device_id):
            self.device_id = device_id

        def __enter__(self):
            log.append(("device", self.device_id))

        def __exit__(self, *exc):
            log.append(("device exit", self.device_id))

    def ExternalStream(ptr, device_id=-1):  # noqa: N802  (cupy's spelling)
        return ("ExternalStream", ptr, device_id)

    class Stream:
        @staticmethod
        def from_external(obj):
            log.append(("from_external", obj.__cuda_stream__()))
            return ("from_external", obj.__cuda_stream__())

    cuda = types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream)
    if with_from_external:
        cuda.Stream = Stream
    return types.SimpleNamespace(cuda=cuda), log


def test_cupy_14_takes_the_stream_protocol_on_the_streams_device():
    cupy, log = _cupy(True)
    assert external_stream(cupy, 0x7F00, 3) == ("from_external", (0, 0x7F00))
    assert log == [("device", 3), ("from_external", (0, 0x7F00)), ("device exit", 3)]


def test_cupy_13_takes_the_pointer_and_the_device():
    cupy, log = _cupy(False)
    assert external_stream(cupy, 0x7F00, 3) == ("ExternalStream", 0x7F00, 3)
    assert log == []
