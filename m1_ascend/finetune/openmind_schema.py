"""The keys ``openmind-cli train`` accepts in its YAML, so a recipe written here never fails there.

openMind parses the file with transformers' ``HfArgumentParser`` into three openMind dataclasses
plus ``Seq2SeqTrainingArguments`` and rejects every other key (openmind.md §0, §1.3). openMind pins
transformers ~4.45, so the training-argument names are those of 4.45 (extracted from the
transformers 4.45.2 wheel's dataclass fields, ``_n_gpu`` excluded because it is not an init field),
not those of whatever transformers is installed beside us.
"""

from __future__ import annotations

# openMind's own dataclasses, key -> accepted YAML value types (None stands for null).
FINETUNE_ARGUMENTS: dict[str, tuple[type, ...]] = {
    "stage": (str,),
    "finetuning_type": (str,),
    "lora_rank": (int,),
    "lora_alpha": (int, float, type(None)),
    "lora_dropout": (int, float),
    "lora_target_modules": (str, type(None)),
}

MODEL_ARGUMENTS: dict[str, tuple[type, ...]] = {
    "model_id": (str,),
    "model_name_or_path": (str,),
    "model_group": (str,),
    "model_revision": (str,),
    "cache_dir": (str,),
    "token": (str,),
    "trust_remote_code": (bool,),
    "use_fast_tokenizer": (bool,),
    "split_special_tokens": (bool,),
    "new_special_tokens": (str,),
    "resize_vocab": (bool,),
    "load_in_4bit": (bool,),
    "use_gradient_checkpointing": (bool,),
    "adapter_models": (str,),
    "per_shard_size": (int,),
}

DATASETS_ARGUMENTS: dict[str, tuple[type, ...]] = {
    "dataset": (str,),
    "custom_dataset_info": (str,),
    "subset_name": (str,),
    "split": (str,),
    "preprocessing_num_workers": (int,),
    "preprocessing_batch_size": (int,),
    "cutoff_len": (int,),
    "max_length": (int, type(None)),
    "reserved_label_len": (int,),
    "ignore_pad_token_for_loss": (bool,),
}

OPENMIND_KEYS: dict[str, tuple[type, ...]] = {**FINETUNE_ARGUMENTS, **MODEL_ARGUMENTS, **DATASETS_ARGUMENTS}

# Seq2SeqTrainingArguments fields of transformers 4.45.2 (TrainingArguments + 5 seq2seq fields).
TRAINING_ARGUMENTS_445: frozenset[str] = frozenset({
    "output_dir", "overwrite_output_dir", "do_train", "do_eval", "do_predict", "eval_strategy", "prediction_loss_only",
    "per_device_train_batch_size", "per_device_eval_batch_size", "per_gpu_train_batch_size", "per_gpu_eval_batch_size",
    "gradient_accumulation_steps", "eval_accumulation_steps", "eval_delay", "torch_empty_cache_steps", "learning_rate",
    "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "num_train_epochs", "max_steps",
    "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps", "log_level", "log_level_replica",
    "log_on_each_node", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps", "logging_nan_inf_filter",
    "save_strategy", "save_steps", "save_total_limit", "save_safetensors", "save_on_each_node", "save_only_model",
    "restore_callback_states_from_checkpoint", "no_cuda", "use_cpu", "use_mps_device", "seed", "data_seed", "jit_mode_eval",
    "use_ipex", "bf16", "fp16", "fp16_opt_level", "half_precision_backend", "bf16_full_eval", "fp16_full_eval", "tf32",
    "local_rank", "ddp_backend", "tpu_num_cores", "tpu_metrics_debug", "debug", "dataloader_drop_last", "eval_steps",
    "dataloader_num_workers", "dataloader_prefetch_factor", "past_index", "run_name", "disable_tqdm",
    "remove_unused_columns", "label_names", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
    "ignore_data_skip", "fsdp", "fsdp_min_num_params", "fsdp_config", "fsdp_transformer_layer_cls_to_wrap",
    "accelerator_config", "deepspeed", "label_smoothing_factor", "optim", "optim_args", "adafactor", "group_by_length",
    "length_column_name", "report_to", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "skip_memory_metrics", "use_legacy_prediction_loop",
    "push_to_hub", "resume_from_checkpoint", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
    "hub_always_push", "gradient_checkpointing", "gradient_checkpointing_kwargs", "include_inputs_for_metrics",
    "eval_do_concat_batches", "fp16_backend", "evaluation_strategy", "push_to_hub_model_id", "push_to_hub_organization",
    "push_to_hub_token", "mp_parameters", "auto_find_batch_size", "full_determinism", "torchdynamo", "ray_scope",
    "ddp_timeout", "torch_compile", "torch_compile_backend", "torch_compile_mode", "dispatch_batches", "split_batches",
    "include_tokens_per_second", "include_num_input_tokens_seen", "neftune_noise_alpha", "optim_target_modules",
    "batch_eval_metrics", "eval_on_start", "use_liger_kernel", "eval_use_gather_object", "sortish_sampler",
    "predict_with_generate", "generation_max_length", "generation_num_beams", "generation_config",
})

# Keys of a ``custom_dataset_info`` JSON entry (openmind.md §0 item 4).
DATASET_INFO_KEYS: frozenset[str] = frozenset({
    "local_path", "hub_url", "file_name", "formatting", "split", "subset", "folder", "num_samples", "columns", "tags",
})


def is_openmind_key(key: str) -> bool:
    return key in OPENMIND_KEYS or key in TRAINING_ARGUMENTS_445
