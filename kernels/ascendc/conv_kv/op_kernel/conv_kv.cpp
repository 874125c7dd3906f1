// ConvKv kernel: width-2 causal conv of K and V per KV head over a varlen batch, with per-slot state.
//
// One task = (sequence, K or V, KV head). A task reads its slot's state row as the "previous
// token" of the sequence's first token, walks the sequence in chunks of rowsPerChunk tokens
// (the previous row of a chunk's first token is carried over from the last chunk), and writes
// the sequence's last raw row back to the state. Arithmetic is fp32; each product is rounded
// to the model dtype before the sum, as in the reference (architecture.md §2.7).
#include "kernel_operator.h"

using namespace AscendC;

template <typename T>
class ConvKvKernel {
 public:
  __aicore__ inline ConvKvKernel() {}

  __aicore__ inline void Init(GM_ADDR k, GM_ADDR v, GM_ADDR convK, GM_ADDR convV, GM_ADDR stateK, GM_ADDR stateV,
                              GM_ADDR cuSeqlens, GM_ADDR stateSlots, GM_ADDR outK, GM_ADDR outV,
                              const ConvKvTilingData& tiling) {
    heads_ = tiling.numKvHeads;
    headDim_ = tiling.headDim;
    channels_ = heads_ * headDim_;
    numTasks_ = tiling.numTasks;
    rows_ = tiling.rowsPerChunk;
    x_[0].SetGlobalBuffer((__gm__ T*)k);
    x_[1].SetGlobalBuffer((__gm__ T*)v);
    weight_[0].SetGlobalBuffer((__gm__ float*)convK);
    weight_[1].SetGlobalBuffer((__gm__ float*)convV);
    state_[0].SetGlobalBuffer((__gm__ T*)stateK);
    state_[1].SetGlobalBuffer((__gm__ T*)stateV);
    out_[0].SetGlobalBuffer((__gm__ T*)outK);
    out_[1].SetGlobalBuffer((__gm__ T*)outV);
    cu_.SetGlobalBuffer((__gm__ int32_t*)cuSeqlens);
    slots_.SetGlobalBuffer((__gm__ int64_t*)stateSlots);
    const uint32_t chunkElems = static_cast<uint32_t>(rows_ * headDim_);
    pipe_.InitBuffer(inQueue_, 1, chunkElems * sizeof(T));
    pipe_.InitBuffer(outQueue_, 1, chunkElems * sizeof(T));
    pipe_.InitBuffer(current_, chunkElems * sizeof(float));
    pipe_.InitBuffer(previous_, chunkElems * sizeof(float));
    pipe_.InitBuffer(rounded_, chunkElems * sizeof(T));
    pipe_.InitBuffer(carry_, static_cast<uint32_t>(headDim_) * sizeof(float));
  }

  __aicore__ inline void Process() {
    for (int64_t task = GetBlockIdx(); task < numTasks_; task += GetBlockNum()) {
      const int64_t seq = task / (2 * heads_);
      const int64_t which = (task / heads_) % 2;  // 0: K, 1: V
      const int64_t head = task % heads_;
      RunTask(seq, which, head);
    }
  }

 private:
  __aicore__ inline void RunTask(int64_t seq, int64_t which, int64_t head) {
    const int64_t start = cu_.GetValue(seq);
    const int64_t end = cu_.GetValue(seq + 1);
    if (end <= start) {
      return;  // an empty sequence keeps its state
    }
    const int64_t stateRow = (slots_.GetValue(seq) * heads_ + head) * headDim_;
    const float wPrev = weight_[which].GetValue(head * 2);
    const float wCur = weight_[which].GetValue(head * 2 + 1);
    LoadCarry(which, stateRow);
    for (int64_t t0 = start; t0 < end; t0 += rows_) {
      const int64_t n = (end - t0 < rows_) ? (end - t0) : rows_;
      CopyIn(which, t0 * channels_ + head * headDim_, n);
      Compute(n, wPrev, wCur);
      CopyOut(which, t0 * channels_ + head * headDim_, n);
    }
    StoreCarry(which, stateRow);
  }

  __aicore__ inline DataCopyExtParams Rows(int64_t n, int64_t gmGapBytes, bool toGm) const {
    // GM-side gaps are in bytes, UB-side gaps in 32-byte blocks (rows are whole blocks: D % 16 == 0).
    DataCopyExtParams params;
    params.blockCount = static_cast<uint16_t>(n);
    params.blockLen = static_cast<uint32_t>(headDim_ * sizeof(T));
    params.srcStride = toGm ? 0 : static_cast<uint32_t>(gmGapBytes);
    params.dstStride = toGm ? static_cast<uint32_t>(gmGapBytes) : 0;
    params.rsv = 0;
    return params;
  }

  __aicore__ inline void LoadCarry(int64_t which, int64_t stateRow) {
    LocalTensor<T> row = inQueue_.AllocTensor<T>();
    DataCopyPadExtParams<T> noPad{false, 0, 0, 0};
    DataCopyPad(row, state_[which][stateRow], Rows(1, 0, false), noPad);
    inQueue_.EnQue(row);
    row = inQueue_.DeQue<T>();
    Cast(carry_.Get<float>(), row, RoundMode::CAST_NONE, static_cast<uint32_t>(headDim_));
    inQueue_.FreeTensor(row);
  }

  __aicore__ inline void CopyIn(int64_t which, int64_t offset, int64_t n) {
    LocalTensor<T> x = inQueue_.AllocTensor<T>();
    DataCopyPadExtParams<T> noPad{false, 0, 0, 0};
    DataCopyPad(x, x_[which][offset], Rows(n, (channels_ - headDim_) * sizeof(T), false), noPad);
    inQueue_.EnQue(x);
  }

  __aicore__ inline void RoundTo(LocalTensor<float>& values, uint32_t count) {
    LocalTensor<T> scratch = rounded_.Get<T>();
    Cast(scratch, values, RoundMode::CAST_RINT, count);
    PipeBarrier<PIPE_V>();
    Cast(values, scratch, RoundMode::CAST_NONE, count);
    PipeBarrier<PIPE_V>();
  }

  __aicore__ inline void Compute(int64_t n, float wPrev, float wCur) {
    const uint32_t d = static_cast<uint32_t>(headDim_);
    const uint32_t count = static_cast<uint32_t>(n) * d;
    LocalTensor<T> x = inQueue_.DeQue<T>();
    LocalTensor<float> cur = current_.Get<float>();
    LocalTensor<float> prev = previous_.Get<float>();
    LocalTensor<float> carry = carry_.Get<float>();
    Cast(cur, x, RoundMode::CAST_NONE, count);
    inQueue_.FreeTensor(x);
    PipeBarrier<PIPE_V>();
    // previous rows = [carry, cur[0 .. n-2]]; then the carry becomes this chunk's last raw row
    Adds(prev, carry, 0.0f, d);
    if (n > 1) {
      Adds(prev[d], cur, 0.0f, count - d);
    }
    PipeBarrier<PIPE_V>();
    Adds(carry, cur[count - d], 0.0f, d);
    Muls(prev, prev, wPrev, count);
    Muls(cur, cur, wCur, count);
    PipeBarrier<PIPE_V>();
    RoundTo(prev, count);
    RoundTo(cur, count);
    Add(prev, prev, cur, count);
    PipeBarrier<PIPE_V>();
    LocalTensor<T> y = outQueue_.AllocTensor<T>();
    Cast(y, prev, RoundMode::CAST_RINT, count);
    outQueue_.EnQue(y);
  }

  __aicore__ inline void CopyOut(int64_t which, int64_t offset, int64_t n) {
    LocalTensor<T> y = outQueue_.DeQue<T>();
    DataCopyPad(out_[which][offset], y, Rows(n, (channels_ - headDim_) * sizeof(T), true));
    outQueue_.FreeTensor(y);
  }

  __aicore__ inline void StoreCarry(int64_t which, int64_t stateRow) {
    LocalTensor<T> row = outQueue_.AllocTensor<T>();
    Cast(row, carry_.Get<float>(), RoundMode::CAST_RINT, static_cast<uint32_t>(headDim_));  // exact: a widened T
    outQueue_.EnQue(row);
    row = outQueue_.DeQue<T>();
    DataCopyPad(state_[which][stateRow], row, Rows(1, 0, true));
    outQueue_.FreeTensor(row);
  }

  TPipe pipe_;
  TQue<QuePosition::VECIN, 1> inQueue_;
  TQue<QuePosition::VECOUT, 1> outQueue_;
  TBuf<TPosition::VECCALC> current_, previous_, rounded_, carry_;
  GlobalTensor<T> x_[2], state_[2], out_[2];
  GlobalTensor<float> weight_[2];
  GlobalTensor<int32_t> cu_;
  GlobalTensor<int64_t> slots_;
  int64_t heads_ = 0, headDim_ = 0, channels_ = 0, numTasks_ = 0, rows_ = 1;
};

extern "C" __global__ __aicore__ void conv_kv(GM_ADDR k, GM_ADDR v, GM_ADDR conv_k, GM_ADDR conv_v, GM_ADDR state_k,
                                              GM_ADDR state_v, GM_ADDR cu_seqlens, GM_ADDR state_slots,
                                              GM_ADDR out_k, GM_ADDR out_v, GM_ADDR workspace, GM_ADDR tiling) {
  GET_TILING_DATA(tilingData, tiling);
  ConvKvKernel<DTYPE_K> op;
  op.Init(k, v, conv_k, conv_v, state_k, state_v, cu_seqlens, state_slots, out_k, out_v, tilingData);
  op.Process();
}
