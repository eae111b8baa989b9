"""conv2d: numbadeconv against its peers (time, GFLOP/s, peak memory)."""

from . import common


class Conv2D(common.OpBenchmark):
    op = "conv2d"
    params = [common.CONV2D_CASES, common.IMPLS, common.THREADS]

    def time_conv2d(self, case, impl, threads):
        self.fn()

    def track_gflops(self, case, impl, threads):
        return common.gflops(self.fn, self.flops)

    track_gflops.unit = "GFLOP/s"


class Conv2DMemory(common.OpMemory):
    op = "conv2d"
    params = [[c for c in common.CONV2D_CASES if not c.startswith("tutorial")], common.IMPLS]

    def peakmem_conv2d(self, case, impl):
        self.fn()

    def peakmem_reference(self, case, impl):
        pass
