// Tiling data of ConvKv: the host splits (sequence, K|V, KV head) tasks over the vector cores.
#ifndef M1_ASCEND_CONV_KV_TILING_H
#define M1_ASCEND_CONV_KV_TILING_H

#include "register/tilingdata_base.h"

namespace optiling {
BEGIN_TILING_DATA_DEF(ConvKvTilingData)
TILING_DATA_FIELD_DEF(int64_t, numTokens);
TILING_DATA_FIELD_DEF(int64_t, numSeqs);
TILING_DATA_FIELD_DEF(int64_t, numKvHeads);
TILING_DATA_FIELD_DEF(int64_t, headDim);
TILING_DATA_FIELD_DEF(int64_t, numTasks);      // numSeqs * 2 (K and V) * numKvHeads
TILING_DATA_FIELD_DEF(int64_t, rowsPerChunk);  // tokens moved through the Unified Buffer at once
END_TILING_DATA_DEF;

REGISTER_TILING_DATA_CLASS(ConvKv, ConvKvTilingData)
}  // namespace optiling

#endif  // M1_ASCEND_CONV_KV_TILING_H
