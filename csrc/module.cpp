// The importable module fastliif._C: importing it loads this library, whose static
// TORCH_LIBRARY registrations (csrc/<op>.cpp, csrc/cpu, csrc/cuda) define torch.ops.fastliif.*.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
