"""Bad-input cases of the CUDA device selection: `--device cuda` without a usable GPU names the
cause (driver missing / too old, no device visible, or a build without the CUDA backend)."""


def cases(m):
    why = (r"(no NVIDIA driver found|the NVIDIA driver is older than this binary's CUDA runtime|"
           r"no CUDA device is visible|the NVIDIA driver could not be initialised|no usable NVIDIA driver or device|"
           r"the driver reports 0 devices|this build has no CUDA backend)")
    return [
        m.Case("device_cuda_reason", 69,
               r"--device cuda: no usable CUDA device \(" + why + r".*; use --device cpu or auto\)",
               argv=["--device", "cuda"], skip=m.skip_gpu,
               what="--device cuda without a GPU: the error says why (driver, device, build)"),
        m.Case("device_cuda_reason_config", 69, r"--device cuda: no usable CUDA device \(" + why,
               sets=["device.type=cuda"], skip=m.skip_gpu,
               what="device.type cuda in the config without a GPU: same reason"),
    ]
