"""conv2d_transpose (deconvolution): numbadeconv against its peers (time, GFLOP/s, peak memory)."""

from . import common


class Conv2DTranspose(common.OpBenchmark):
    op = "conv2d_transpose"
    params = [common.TRANSPOSE_CASES, common.IMPLS, common.THREADS]

    def time_conv2d_transpose(self, case, impl, threads):
        self.fn()

    def track_gflops(self, case, impl, threads):
        return common.gflops(self.fn, self.flops)

    track_gflops.unit = "GFLOP/s"


class Conv2DTransposeMemory(common.OpMemory):
    op = "conv2d_transpose"
    params = [[c for c in common.TRANSPOSE_CASES if not c.startswith("tutorial")], common.IMPLS]

    def peakmem_conv2d_transpose(self, case, impl):
        self.fn()

    def peakmem_reference(self, case, impl):
        pass
