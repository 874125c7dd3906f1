// PyTorch binding of the ConvKv Ascend C operator: the NPU (PrivateUse1) kernel of
// torch.ops.m1_ascend.conv_kv, whose schema is defined in Python (kernels/npu/custom_op.py).
//
// Calls the aclnn two-stage API that the op package generates (aclnnConvKvGetWorkspaceSize /
// aclnnConvKv, header aclnn_conv_kv.h, library libcust_opapi.so) on the current NPU stream.
#include <torch/extension.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "aclnn/acl_meta.h"
#include "aclnn_conv_kv.h"
#include "torch_npu/csrc/core/npu/NPUStream.h"

namespace {

aclDataType AclType(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return ACL_FLOAT16;
    case at::kBFloat16: return ACL_BF16;
    case at::kFloat: return ACL_FLOAT;
    case at::kInt: return ACL_INT32;
    case at::kLong: return ACL_INT64;
    default: TORCH_CHECK(false, "m1_ascend::conv_kv: unsupported dtype ", type);
  }
}

// An aclTensor view of a contiguous torch tensor, destroyed with the wrapper.
class AclView {
 public:
  explicit AclView(const at::Tensor& t) {
    TORCH_CHECK(t.is_contiguous(), "m1_ascend::conv_kv: expected a contiguous tensor");
    std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
    std::vector<int64_t> strides(t.strides().begin(), t.strides().end());
    const int64_t storage = static_cast<int64_t>(t.numel());
    tensor_ = aclCreateTensor(sizes.data(), sizes.size(), AclType(t.scalar_type()), strides.data(), 0,
                              ACL_FORMAT_ND, &storage, 1, t.data_ptr());
    TORCH_CHECK(tensor_ != nullptr, "m1_ascend::conv_kv: aclCreateTensor failed");
  }
  ~AclView() { aclDestroyTensor(tensor_); }
  AclView(const AclView&) = delete;
  AclView& operator=(const AclView&) = delete;
  aclTensor* get() const { return tensor_; }

 private:
  aclTensor* tensor_ = nullptr;
};

void Check(aclnnStatus status, const char* what) {
  TORCH_CHECK(status == 0, "m1_ascend::conv_kv: ", what, " failed with aclnn status ", status);
}

std::tuple<at::Tensor, at::Tensor> ConvKvNpu(const at::Tensor& k, const at::Tensor& v, const at::Tensor& conv_k,
                                             const at::Tensor& conv_v, at::Tensor& state_k, at::Tensor& state_v,
                                             const at::Tensor& cu_seqlens, const at::Tensor& state_slots) {
  TORCH_CHECK(state_k.is_contiguous() && state_v.is_contiguous(), "m1_ascend::conv_kv: states must be contiguous");
  TORCH_CHECK(state_k.scalar_type() == k.scalar_type(), "m1_ascend::conv_kv: state dtype must match k");
  // The kernel reads whole rows: k/v views of the packed projection are made contiguous here.
  const at::Tensor kc = k.contiguous(), vc = v.contiguous();
  // Weights rounded to the model dtype (as the reference does), passed as fp32 scalars.
  const at::Tensor wk = conv_k.to(k.scalar_type()).to(at::kFloat).contiguous();
  const at::Tensor wv = conv_v.to(v.scalar_type()).to(at::kFloat).contiguous();
  const at::Tensor cu = cu_seqlens.to(at::kInt).contiguous();
  const at::Tensor slots = state_slots.to(at::kLong).contiguous();
  at::Tensor out_k = at::empty_like(kc), out_v = at::empty_like(vc);

  AclView a_k(kc), a_v(vc), a_wk(wk), a_wv(wv), a_sk(state_k), a_sv(state_v), a_cu(cu), a_slots(slots);
  AclView a_ok(out_k), a_ov(out_v);
  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  Check(aclnnConvKvGetWorkspaceSize(a_k.get(), a_v.get(), a_wk.get(), a_wv.get(), a_sk.get(), a_sv.get(),
                                    a_cu.get(), a_slots.get(), a_ok.get(), a_ov.get(), &workspace_size, &executor),
        "aclnnConvKvGetWorkspaceSize");
  at::Tensor workspace = at::empty({static_cast<int64_t>(workspace_size)}, k.options().dtype(at::kByte));
  aclrtStream stream = c10_npu::getCurrentNPUStream().stream(false);
  Check(aclnnConvKv(workspace_size ? workspace.data_ptr() : nullptr, workspace_size, executor, stream), "aclnnConvKv");
  return {out_k, out_v};
}

}  // namespace

TORCH_LIBRARY_IMPL(m1_ascend, PrivateUse1, m) { m.impl("conv_kv", &ConvKvNpu); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.doc() = "Ascend kernel of torch.ops.m1_ascend.conv_kv"; }
