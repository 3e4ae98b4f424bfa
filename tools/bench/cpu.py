"""The CPU a benchmark ran on: its vector ISA tier and its physical limit per precision.

Every benchmark prints `cpu` (this module's `describe()`) beside its figures, because the
same file runs at very different speeds on an AVX2-only CPU and on one with AVX-512, VNNI
and BF16 (issue 29 measured TFLite int8 at 0.28x torchvision on the one, 0.78x on the other).

The physical limit is cores x clock x operations per cycle per core, with the operations
per cycle from the ISA and the width of the floating-point datapath:
  fp32: 2 FMA pipes x (datapath bits / 32) lanes x 2 (multiply and add);
  bf16: AVX512-BF16's VDPBF16PS does two bf16 products per fp32 lane: 2x fp32;
        AMX-BF16 (Intel): 1024 FLOPs per cycle per core;
  int8: VNNI's VPDPBUSD does four u8 x s8 products per int32 lane: 4x fp32; without VNNI
        the AVX2 sequence (VPMADDUBSW, VPMADDWD, VPADDD) gets a third of that;
        AMX-INT8: 2048 ops per cycle per core.
The datapath is 512 bits on Intel CPUs with AVX-512 and on AMD from family 26 (Zen 5); AMD
family 25 (Zen 4) runs AVX-512 on 256-bit units, and every AVX2-only CPU is 256 bits wide.
The clock is the nominal one /proc/cpuinfo reports (a virtual machine shows no boost
clock): a path can exceed 100% of the limit by turbo, so `--cpu_ghz` overrides it. A
virtual CPU may be a hardware thread sharing its core: the limit counts each as a core.
"""
import os
import platform

FMA_PIPES = 2


def _cpuinfo(path="/proc/cpuinfo"):
    """The first processor's fields (flags as a set), or {} where there is no such file."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return {}
    fields["flags"] = set(fields.get("flags", "").split())
    return fields


def vector_isa(flags):
    """'AVX-512 + VNNI + BF16', 'AVX2 + VNNI', 'AVX2', 'AVX-512 + VNNI + BF16 + AMX', ..."""
    if "avx512f" in flags:
        tier = "AVX-512"
    elif "avx2" in flags:
        tier = "AVX2"
    elif "avx" in flags:
        tier = "AVX"
    else:
        tier = "SSE"
    extras = []
    if {"avx512_vnni", "avx_vnni"} & flags:
        extras.append("VNNI")
    if "avx512_bf16" in flags:
        extras.append("BF16")
    if {"amx_bf16", "amx_int8"} & flags:
        extras.append("AMX")
    return " + ".join([tier] + extras)


def datapath_bits(flags, vendor, family):
    if "avx512f" in flags and not (vendor == "AuthenticAMD" and family < 26):
        return 512
    return 256 if {"avx2", "avx"} & flags else 128


def ops_per_cycle(flags, vendor, family):
    """Per core and cycle: {'fp32': FLOPs, 'bf16': FLOPs or None, 'int8': ops}."""
    fp32 = FMA_PIPES * datapath_bits(flags, vendor, family) // 32 * 2
    bf16 = None
    if "amx_bf16" in flags:
        bf16 = 1024
    elif "avx512_bf16" in flags:
        bf16 = 2 * fp32
    if "amx_int8" in flags:
        int8 = 2048
    elif {"avx512_vnni", "avx_vnni"} & flags:
        int8 = 4 * fp32
    else:
        int8 = 4 * fp32 // 3
    return {"fp32": fp32, "bf16": bf16, "int8": int8}


def describe(cpu_ghz=None, cores=None, cpuinfo_path="/proc/cpuinfo"):
    """A JSON-ready description: model, vector ISA, cores, clock, peak G(FL)OP/s by precision."""
    info = _cpuinfo(cpuinfo_path)
    flags = info.get("flags", set())
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0)
    cores = cores or len(os.sched_getaffinity(0))
    if cpu_ghz is None:
        mhz = info.get("cpu MHz")
        cpu_ghz = float(mhz) / 1e3 if mhz else None
    per_cycle = ops_per_cycle(flags, vendor, family)
    peak = {precision: (None if ops is None or cpu_ghz is None
                        else round(cores * cpu_ghz * ops, 1))
            for precision, ops in per_cycle.items()}
    return {"model": info.get("model name", platform.processor() or "unknown"),
            "vendor": vendor, "family": family, "vector_isa": vector_isa(flags),
            "datapath_bits": datapath_bits(flags, vendor, family), "cores": cores,
            "ghz": cpu_ghz, "clock_source": "nominal (/proc/cpuinfo)" if cpu_ghz else None,
            "ops_per_cycle_per_core": per_cycle, "peak_gops": peak}


def share_of_peak(gflops_per_image, seconds_per_image, peak_gops):
    """Achieved over physical: the fraction of the limit one image's latency implies."""
    if not peak_gops or not seconds_per_image:
        return None
    return round(gflops_per_image / seconds_per_image / peak_gops, 4)


def line(cpu=None):
    """'AMD EPYC, AVX-512 + VNNI + BF16, 2 cores at 2.60 GHz' for a human-readable heading."""
    cpu = cpu or describe()
    clock = f" at {cpu['ghz']:.2f} GHz" if cpu["ghz"] else ""
    return f"{cpu['model']}, {cpu['vector_isa']}, {cpu['cores']} cores{clock}"
