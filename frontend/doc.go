// Package frontend turns model descriptions into slc's IR.
//
// The LLaMA frontend reads an HF/SLTrain LLaMA config (the seed's
// configs/llama_*.json, transformers 4.28 field names) with ParseLlamaConfig or
// ReadLlamaConfig, and BuildLlama emits the forward program with its loss as an
// ir.Module: the computation of the seed's modeling_llama.py (pre-norm
// RMSNorm, rotary attention, SwiGLU MLP, untied lm_head, mean next-token
// cross-entropy), expressed with the IR's small op set and HF's parameter names,
// so that the SLTrain fusion pass can find every projection by name and weights
// can be exported back to a PyTorch state dict.
//
// Everything here is shapes and initialiser specs: building a 7B model allocates
// no tensors. Errors a user can cause (a malformed or unsupported config, a bad
// batch or sequence length) come back as values that name the JSON field.
package frontend
