// ConvKv host side: operator prototype, shape/dtype inference and tiling.
//
// Contract (same as kernels/reference/conv_kv.py): k, v [N, G, D] (contiguous), conv_k, conv_v
// [G, 2] fp32 (already rounded to the model dtype by the caller; index 0 weighs the previous
// token), state_k, state_v [slots, G, D] updated in place, cu_seqlens int32 [S + 1],
// state_slots int64 [S]; outputs out_k, out_v [N, G, D].
//
// The states are inputs the kernel writes through (as vllm-ascend's CausalConv1d does with its
// conv state): correct for eager aclnn calls. Graph mode (Ascend IR) would additionally need
// them declared as same-named outputs.
#include <algorithm>

#include "conv_kv_tiling.h"
#include "register/op_def_registry.h"
#include "tiling/platform/platform_ascendc.h"

namespace optiling {
namespace {
constexpr int64_t kMaxRowsPerChunk = 64;
// Per token row in the Unified Buffer: x (T, 2 bytes), fp32 x, fp32 previous, rounding scratch
// (T) and the output (T).
constexpr int64_t kBytesPerElement = 2 + 4 + 4 + 2 + 2;
constexpr int64_t kUbReserve = 8 * 1024;  // carry row and alignment slack
}  // namespace

static ge::graphStatus ConvKvTiling(gert::TilingContext* context) {
  const gert::Shape& k = context->GetInputShape(0)->GetStorageShape();
  const gert::Shape& cu = context->GetInputShape(6)->GetStorageShape();
  if (k.GetDimNum() != 3 || cu.GetDimNum() != 1 || cu.GetDim(0) < 1) {
    return ge::GRAPH_FAILED;
  }
  const int64_t headDim = k.GetDim(2);
  if (headDim % 16 != 0) {  // whole 32-byte blocks per row for fp16/bf16
    return ge::GRAPH_FAILED;
  }
  auto platform = platform_ascendc::PlatformAscendC(context->GetPlatformInfo());
  uint64_t ubSize = 0;
  platform.GetCoreMemSize(platform_ascendc::CoreMemType::UB, ubSize);
  const int64_t fitRows = (static_cast<int64_t>(ubSize) - kUbReserve) / (headDim * kBytesPerElement);
  const int64_t rows = std::max<int64_t>(1, std::min(kMaxRowsPerChunk, fitRows));

  ConvKvTilingData tiling;
  const int64_t numSeqs = cu.GetDim(0) - 1;
  const int64_t numTasks = numSeqs * 2 * k.GetDim(1);
  tiling.set_numTokens(k.GetDim(0));
  tiling.set_numSeqs(numSeqs);
  tiling.set_numKvHeads(k.GetDim(1));
  tiling.set_headDim(headDim);
  tiling.set_numTasks(numTasks);
  tiling.set_rowsPerChunk(rows);

  const int64_t cores = std::max<int64_t>(1, std::min<int64_t>(platform.GetCoreNumAiv(), numTasks));
  context->SetBlockDim(static_cast<uint32_t>(cores));
  tiling.SaveToBuffer(context->GetRawTilingData()->GetData(), context->GetRawTilingData()->GetCapacity());
  context->GetRawTilingData()->SetDataSize(tiling.GetDataSize());
  size_t* workspace = context->GetWorkspaceSizes(1);
  workspace[0] = platform.GetLibApiWorkSpaceSize();
  return ge::GRAPH_SUCCESS;
}
}  // namespace optiling

namespace ge {
static graphStatus ConvKvInferShape(gert::InferShapeContext* context) {
  *context->GetOutputShape(0) = *context->GetInputShape(0);
  *context->GetOutputShape(1) = *context->GetInputShape(1);
  return GRAPH_SUCCESS;
}

static graphStatus ConvKvInferDataType(gert::InferDataTypeContext* context) {
  context->SetOutputDataType(0, context->GetInputDataType(0));
  context->SetOutputDataType(1, context->GetInputDataType(1));
  return GRAPH_SUCCESS;
}
}  // namespace ge

namespace ops {
class ConvKv : public OpDef {
 public:
  explicit ConvKv(const char* name) : OpDef(name) {
    const std::vector<ge::DataType> model = {ge::DT_FLOAT16, ge::DT_BF16};
    const std::vector<ge::DataType> fp32 = {ge::DT_FLOAT, ge::DT_FLOAT};
    const std::vector<ge::DataType> i32 = {ge::DT_INT32, ge::DT_INT32};
    const std::vector<ge::DataType> i64 = {ge::DT_INT64, ge::DT_INT64};
    const std::vector<ge::Format> nd = {ge::FORMAT_ND, ge::FORMAT_ND};
    this->Input("k").ParamType(REQUIRED).DataType(model).Format(nd);
    this->Input("v").ParamType(REQUIRED).DataType(model).Format(nd);
    this->Input("conv_k").ParamType(REQUIRED).DataType(fp32).Format(nd);
    this->Input("conv_v").ParamType(REQUIRED).DataType(fp32).Format(nd);
    this->Input("state_k").ParamType(REQUIRED).DataType(model).Format(nd);
    this->Input("state_v").ParamType(REQUIRED).DataType(model).Format(nd);
    this->Input("cu_seqlens").ParamType(REQUIRED).DataType(i32).Format(nd);
    this->Input("state_slots").ParamType(REQUIRED).DataType(i64).Format(nd);
    this->Output("out_k").ParamType(REQUIRED).DataType(model).Format(nd);
    this->Output("out_v").ParamType(REQUIRED).DataType(model).Format(nd);
    this->SetInferShape(ge::ConvKvInferShape).SetInferDataType(ge::ConvKvInferDataType);
    this->AICore().SetTiling(optiling::ConvKvTiling).AddConfig("ascend910b").AddConfig("ascend910_93");
  }
};

OP_ADD(ConvKv);
}  // namespace ops
