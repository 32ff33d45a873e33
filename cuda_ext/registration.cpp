// Operator schemas of the rlsuite namespace (callable as torch.ops.rlsuite.<name>) and the
// Python module rlsuite._C whose import loads them. Kernels register per device in
// trees.cpp / gather.cpp / storage.cpp (CPU) and cuda_glue.cpp (CUDA, kernels in trees_cuda.cu /
// gather_cuda.cu / storage_cuda.cu). The pure-torch references with the full contracts are in
// rlsuite/replay/ops.py (stream_add's: StreamStorage.write in rlsuite/replay/storage.py).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(rlsuite, m) {
  // Priority trees (float64, 16-ary, leaves last).
  m.def("tree_update_(Tensor(a!) tree, Tensor idx, Tensor values, bool is_min) -> ()");
  m.def("tree_rebuild_(Tensor(a!) tree, bool is_min) -> ()");
  m.def("tree_search(Tensor tree, Tensor prefix) -> Tensor");
  m.def("per_sample(Tensor sum_tree, Tensor min_tree, Tensor u, float beta) -> (Tensor, Tensor)");
  m.def("per_update_(Tensor(a!) sum_tree, Tensor(b!) min_tree, Tensor idx, Tensor td, Tensor valid, "
        "float alpha, float eps) -> float");
  // Batch building from (E, L, ...) stream storage.
  m.def("frame_stack_gather(Tensor frames, Tensor first, Tensor t_idx, Tensor env_idx, int stack, "
        "Tensor(a!) out) -> ()");
  m.def("frame_window_gather(Tensor frames, Tensor first, Tensor t_idx, Tensor env_idx, int stack, int n, "
        "Tensor(a!) out) -> ()");
  m.def("nstep_returns(Tensor rewards, Tensor terminated, Tensor truncated, Tensor t_idx, Tensor env_idx, "
        "int n, float gamma) -> (Tensor, Tensor, Tensor)");
  m.def("sequence_gather(Tensor frames, Tensor action, Tensor rtg, Tensor timestep, Tensor ended, Tensor final, "
        "Tensor t_idx, Tensor env_idx, int length, Tensor(a!) obs_out) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gather_transitions(Tensor[] frames, Tensor first, Tensor action, Tensor reward, Tensor terminated, "
        "Tensor truncated, Tensor gidx, int stack, int n, float gamma, bool window, Tensor(a!)[] obs_out, "
        "Tensor(b!)[] next_out, Tensor(c!) action_out, Tensor(d!) ret_out, Tensor(e!) disc_out) -> ()");
  // Fused sampling: draw (from `generator`, as the reference does), pick, gather into `out`.
  // state = [first, action, reward, terminated, truncated, valid, cursor, num_valid(, sum_tree, min_tree)],
  // out = [action, reward, discount, indices, weights, obs per frame key..., next obs per key...].
  m.def("sample_uniform(Tensor[] frames, Tensor[] state, Tensor(a!)[] out, Generator? generator, int stack, int n, "
        "float gamma, bool window) -> ()");
  m.def("sample_per(Tensor[] frames, Tensor[] state, Tensor(a!)[] out, Generator? generator, float beta, int stack, "
        "int n, float gamma, bool window) -> ()");
  m.def("uniform_pick(Tensor valid, Tensor draws, int width, int slots, int need) -> Tensor");
  // The buffer's add: storage write + validity refresh (+ priority follow-up).
  m.def("stream_add(Tensor(a!)[] frames, Tensor[] obs, Tensor[] final_obs, Tensor(b!) action, Tensor(c!) reward, "
        "Tensor(d!) first, Tensor(e!) terminated, Tensor(f!) truncated, Tensor(g!) final, Tensor(h!) valid, "
        "Tensor(i!) cursor, Tensor(j!) new_episode, Tensor(k!) num_valid, Tensor act_in, Tensor rew_in, "
        "Tensor term_in, Tensor trunc_in, int frame_stack, int n_step, Tensor(l!)? sum_tree, "
        "Tensor(m!)? min_tree, float max_priority) -> ()");
}

static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "rlsuite native replay operators (torch.ops.rlsuite)", -1,
                                 nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
