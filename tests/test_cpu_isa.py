"""The benchmarks' CPU description: vector ISA tiers and physical limits from /proc/cpuinfo.

Generated cpuinfo files of the CPUs this project meets (AVX2-only Zen 3, Zen 4 and Zen 5
with AVX-512 + VNNI + BF16, an Intel CPU with AMX); each limit is recomputed here from
cores x clock x the ops per cycle that the ISA's instructions give (tools/bench/cpu.py).
"""
import pytest

from tools.bench import cpu

BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2"
AVX512 = "avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16"
CPUS = {  # name: (vendor, family, flags, ISA, datapath bits)
    "zen3": ("AuthenticAMD", 25, BASE, "AVX2", 256),
    "zen4": ("AuthenticAMD", 25, f"{BASE} {AVX512}", "AVX-512 + VNNI + BF16", 256),
    "zen5": ("AuthenticAMD", 26, f"{BASE} {AVX512}", "AVX-512 + VNNI + BF16", 512),
    "sapphire_rapids": ("GenuineIntel", 6, f"{BASE} {AVX512} amx_bf16 amx_int8 amx_tile",
                        "AVX-512 + VNNI + BF16 + AMX", 512),
    "alder_lake": ("GenuineIntel", 6, f"{BASE} avx_vnni", "AVX2 + VNNI", 256),
}


def _write(tmp_path, vendor, family, flags, mhz="2596.122"):
    path = tmp_path / "cpuinfo"
    fields = [("processor", "0"), ("vendor_id", vendor), ("cpu family", str(family)),
              ("model name", "Test CPU"), ("cpu MHz", mhz), ("flags", flags)]
    one = "".join(f"{k}\t: {v}\n" for k, v in fields)
    path.write_text(one + "\n" + one.replace("processor\t: 0", "processor\t: 1"))
    return str(path)


@pytest.mark.parametrize("name", sorted(CPUS))
def test_isa_and_limits(tmp_path, name):
    vendor, family, flags, isa, bits = CPUS[name]
    described = cpu.describe(cores=2, cpuinfo_path=_write(tmp_path, vendor, family, flags))
    assert described["vector_isa"] == isa
    assert described["datapath_bits"] == bits
    fp32 = 2 * 2 * bits // 32  # two FMA pipes, a multiply and an add per fp32 lane
    per_cycle = described["ops_per_cycle_per_core"]
    assert per_cycle["fp32"] == fp32
    assert per_cycle["bf16"] == {"AMX": 1024, "BF16": 2 * fp32}.get(
        isa.split(" + ")[-1], None)
    vnni = "VNNI" in isa
    expected_int8 = 2048 if "AMX" in isa else (4 * fp32 if vnni else 4 * fp32 // 3)
    assert per_cycle["int8"] == expected_int8
    assert described["peak_gops"]["fp32"] == round(2 * 2.596122 * fp32, 1)
    assert described["peak_gops"]["int8"] == round(2 * 2.596122 * expected_int8, 1)
    assert cpu.line(described) == f"Test CPU, {isa}, 2 cores at 2.60 GHz"


def test_no_cpuinfo_names_what_is_unknown(tmp_path):
    described = cpu.describe(cores=2, cpuinfo_path=str(tmp_path / "missing"))
    assert described["ghz"] is None and described["peak_gops"]["fp32"] is None
    assert described["vector_isa"] == "SSE"


def test_share_of_peak():
    # 143 GFLOPs (R-101 OS 16 at 513) in 0.5 s on a 332.3 GFLOP/s limit: 86%.
    assert cpu.share_of_peak(143, 0.5, 332.3) == round(143 / 0.5 / 332.3, 4)
    assert cpu.share_of_peak(143, 0.5, None) is None


def test_this_machine_is_described():
    described = cpu.describe()
    assert described["cores"] >= 1
    assert described["vector_isa"]
