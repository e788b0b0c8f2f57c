# Compiles one native/*.cu to PTX with NVRTC, with the options and in-memory headers (every native/*.cuh) that
# Parrot.Tensors' NvrtcCompiler uses. Usage: nvrtc_ptx.py FILE.cu compute_XX OUT.ptx
import ctypes, glob, os, sys

src_file, arch, out = sys.argv[1], sys.argv[2], sys.argv[3]
lib = ctypes.CDLL("libnvrtc.so.11.2")
headers = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(src_file)), "*.cuh")))
texts = (ctypes.c_char_p * len(headers))(*[open(h, "rb").read() for h in headers])
names = (ctypes.c_char_p * len(headers))(*[os.path.basename(h).encode() for h in headers])
prog = ctypes.c_void_p()
if lib.nvrtcCreateProgram(ctypes.byref(prog), open(src_file, "rb").read(), os.path.basename(src_file).encode(), len(headers), texts, names) != 0:
    sys.exit(f"{src_file}: nvrtcCreateProgram failed")
opts = [b"--std=c++17", b"--fmad=true", b"-default-device", ("--gpu-architecture=" + arch).encode()]
rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
n = ctypes.c_size_t()
lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
log = ctypes.create_string_buffer(n.value)
lib.nvrtcGetProgramLog(prog, log)
if log.value.strip():
    print(log.value.decode(errors="replace"))
if rc != 0:
    sys.exit(f"{src_file}: NVRTC error {rc}")
lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
ptx = ctypes.create_string_buffer(n.value)
lib.nvrtcGetPTX(prog, ptx)
open(out, "wb").write(ptx.value)
