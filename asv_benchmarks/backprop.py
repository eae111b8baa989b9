"""The gradients: conv2d_backprop_filter and conv2d_backprop_input against their peers."""

from . import common


class BackpropFilter(common.OpBenchmark):
    op = "backprop_filter"
    params = [common.BACKPROP_FILTER_CASES, common.IMPLS, common.THREADS]

    def time_backprop_filter(self, case, impl, threads):
        self.fn()

    def track_gflops(self, case, impl, threads):
        return common.gflops(self.fn, self.flops)

    track_gflops.unit = "GFLOP/s"


class BackpropInput(common.OpBenchmark):
    op = "backprop_input"
    params = [common.BACKPROP_INPUT_CASES, common.IMPLS, common.THREADS]

    def time_backprop_input(self, case, impl, threads):
        self.fn()

    def track_gflops(self, case, impl, threads):
        return common.gflops(self.fn, self.flops)

    track_gflops.unit = "GFLOP/s"


class BackpropFilterMemory(common.OpMemory):
    op = "backprop_filter"
    params = [[c for c in common.BACKPROP_FILTER_CASES if not c.startswith("tutorial")],
              common.IMPLS]

    def peakmem_backprop_filter(self, case, impl):
        self.fn()

    def peakmem_reference(self, case, impl):
        pass
