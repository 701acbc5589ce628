//! What this CPU gives the engine: which of our own kernels run (AVX2 or
//! NEON), whether the cores do half-precision arithmetic, and which of its
//! kernels tract picked for its matrix products. tract picks its arm64
//! kernels from the `CPU part` lines of /proc/cpuinfo (the string-largest
//! part decides for the whole process); `pocket-studio cpu` prints what it
//! decided, so a board owner sees what runs without a profiler, and the
//! aarch64 tests read it off committed /proc/cpuinfo samples of the boards
//! we target.

use tract_linalg::mmm::{MmmDispatch, Query};
use tract_onnx::prelude::DatumType;

/// The matrix products [`CpuReport`] asks tract about: the UNet's 3x3
/// convolution at 64x64 latents (320 channels out, 3x3x320 in, 4,096
/// pixels), a projection of its attention, and a one-column product (the
/// text encoder at batch one).
const PRODUCTS: [(&str, [usize; 3]); 3] = [
    ("3x3 convolution 320x2880 by 4096", [320, 2880, 4096]),
    ("projection 320x320 by 4096", [320, 320, 4096]),
    ("one column 768x768 by 1", [768, 768, 1]),
];

/// Names for the `CPU part` numbers of the cores we meet (ARM's
/// implementer 0x41).
const PART_NAMES: [(&str, &str); 9] = [
    ("0xd03", "Cortex-A53"),
    ("0xd04", "Cortex-A35"),
    ("0xd05", "Cortex-A55"),
    ("0xd08", "Cortex-A72"),
    ("0xd09", "Cortex-A73"),
    ("0xd0a", "Cortex-A75"),
    ("0xd0b", "Cortex-A76"),
    ("0xd0c", "Neoverse-N1"),
    ("0xd41", "Cortex-A78"),
];

/// One line of the report's kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductKernel {
    /// `f32` or `f16`.
    pub precision: &'static str,
    /// The product's shape, as [`PRODUCTS`] says it.
    pub product: &'static str,
    /// tract's kernel name (`arm64simd_mmm_f32_8x8_gen`, ...), or `none`.
    pub kernel: String,
}

/// What the engine runs on this CPU.
#[derive(Debug, Clone)]
pub struct CpuReport {
    /// `x86_64`, `aarch64`, ...
    pub arch: &'static str,
    /// Cores by `CPU part` (with a name where known), as /proc/cpuinfo
    /// lists them; empty where it has no such lines (x86_64, qemu-user).
    pub cores: Vec<(String, usize)>,
    /// Our kernels' instruction set, `None` where tract's ops run instead.
    pub engine_kernels: Option<&'static str>,
    /// Whether the cores do half-precision arithmetic (aarch64 FEAT_FP16,
    /// `asimdhp`), which doubles the multiply-adds a NEON instruction does.
    pub half_precision: bool,
    /// tract's arm64 tuning (`Generic`: the kernels for out-of-order
    /// cores; `CortexA55`, ...); `None` off aarch64.
    pub tract_kind: Option<String>,
    /// The instruction-set features tract's dispatch uses.
    pub tract_isa: String,
    /// The kernel tract picks for each of [`PRODUCTS`], f32 and, where tract
    /// has f16 arithmetic, f16.
    pub products: Vec<ProductKernel>,
}

impl CpuReport {
    /// Read this CPU (and tract's choice, made once per process from
    /// /proc/cpuinfo).
    pub fn probe() -> CpuReport {
        let isa = tract_linalg::isa::native();
        let dispatch = MmmDispatch::native();
        let mut products = Vec::new();
        let mut precisions = vec![("f32", DatumType::F32)];
        if isa.has(tract_linalg::isa::Isa::Aarch64Fp16) {
            precisions.push(("f16", DatumType::F16));
        }
        for (precision, datum) in precisions {
            for (product, [m, k, n]) in PRODUCTS {
                let query = Query::plain(datum, Some(m), Some(k), Some(n));
                let kernel = dispatch
                    .pick(&query)
                    .map_or_else(|| "none".to_string(), |(mmm, _, _)| mmm.name().to_string());
                products.push(ProductKernel {
                    precision,
                    product,
                    kernel,
                });
            }
        }
        CpuReport {
            arch: std::env::consts::ARCH,
            cores: std::fs::read_to_string("/proc/cpuinfo")
                .map(|text| cores_by_part(&text))
                .unwrap_or_default(),
            engine_kernels: engine_kernels(),
            half_precision: half_precision(),
            tract_kind: tract_kind(),
            tract_isa: format!("{isa:?}"),
            products,
        }
    }
}

impl std::fmt::Display for CpuReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores = if self.cores.is_empty() {
            "no CPU part lines in /proc/cpuinfo".to_string()
        } else {
            self.cores
                .iter()
                .map(|(part, count)| format!("{count}x {part}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "cpu: {} ({cores})", self.arch)?;
        writeln!(
            f,
            "engine kernels: {}",
            self.engine_kernels
                .unwrap_or("none (tract's operators run instead)")
        )?;
        writeln!(
            f,
            "half-precision arithmetic: {}",
            if self.half_precision { "yes" } else { "no" }
        )?;
        if let Some(kind) = &self.tract_kind {
            writeln!(f, "tract kind: {kind}")?;
        }
        writeln!(f, "tract isa: {}", self.tract_isa)?;
        for line in &self.products {
            writeln!(
                f,
                "tract {} {}: {}",
                line.precision, line.product, line.kernel
            )?;
        }
        Ok(())
    }
}

/// `CPU part` values of a /proc/cpuinfo text with how many cores have each,
/// in the order they first appear, named where [`PART_NAMES`] knows them.
pub fn cores_by_part(cpuinfo: &str) -> Vec<(String, usize)> {
    let mut cores: Vec<(String, usize)> = Vec::new();
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim() != "CPU part" {
            continue;
        }
        let part = value.trim();
        let label = match PART_NAMES
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(part))
        {
            Some((_, name)) => format!("{part} {name}"),
            None => part.to_string(),
        };
        match cores.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1,
            None => cores.push((label, 1)),
        }
    }
    cores
}

/// The instruction set our kernels use here, if they run.
fn engine_kernels() -> Option<&'static str> {
    if !super::direct_conv::available() {
        None
    } else if cfg!(target_arch = "aarch64") {
        Some("NEON")
    } else {
        Some("AVX2+FMA")
    }
}

/// Whether the cores do half-precision arithmetic (the kernel's HWCAP,
/// which qemu-user sets from its CPU model too).
pub fn half_precision() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// tract's arm64 tuning, as it chooses it (from /proc/cpuinfo and its
/// `TRACT_CPU_AARCH64_*` variables).
fn tract_kind() -> Option<String> {
    #[cfg(target_arch = "aarch64")]
    {
        Some(format!("{:?}", tract_linalg::arm64::Kind::choose()))
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_counted_and_named_in_order() {
        let text = "processor\t: 0\nCPU part\t: 0xd05\n\nprocessor\t: 1\nCPU part\t: 0xd05\n\n\
                    processor\t: 2\nCPU part\t: 0xd0b\n\nprocessor\t: 3\nCPU part\t: 0xfff\n";
        assert_eq!(
            cores_by_part(text),
            vec![
                ("0xd05 Cortex-A55".to_string(), 2),
                ("0xd0b Cortex-A76".to_string(), 1),
                ("0xfff".to_string(), 1)
            ]
        );
        assert!(cores_by_part("model name\t: Intel\n").is_empty());
    }

    #[test]
    fn every_product_gets_a_kernel() {
        let report = CpuReport::probe();
        assert!(report.products.len() >= PRODUCTS.len());
        for line in &report.products {
            assert_ne!(line.kernel, "none", "{line:?}");
        }
        assert!(report.to_string().contains("tract f32 3x3 convolution"));
    }
}
