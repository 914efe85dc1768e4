"""Generator configuration, example configs, loading errors and the CUDA-only quantization rule."""

import warnings
from pathlib import Path

import pytest
import torch

from generator import GeneratorConfig, MultimodalGenerator, PromptConfig, QuantizationUnavailableError
from generator.loading import model_load_kwargs, quantization_config
from rag.config import PipelineConfig
from rag.tiny_models import missing_requirements, save_tiny_generator_checkpoint
from ret2vqa.config import ConfigError, from_dict
from ret2vqa.hub import ModelUnavailableError

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "generator"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_generator_checkpoint("qwen2_vl", tmp_path_factory.mktemp("tiny-qwen2-vl"), seed=0)


# ------------------------------------------------------------------- dataclass
def test_defaults_are_greedy_and_unquantized():
    cfg = GeneratorConfig()
    assert (cfg.do_sample, cfg.num_beams, cfg.quantization) == (False, 1, None)
    assert cfg.context_token_budget == 4096
    assert cfg.prompt == PromptConfig()


def test_from_dict_builds_nested_prompt_config():
    cfg = from_dict(GeneratorConfig, {"model": "x/y", "prompt": {"instruction": "One word.", "min_passage_tokens": 4}})
    assert cfg.prompt.instruction == "One word."
    assert cfg.prompt.min_passage_tokens == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modle": "x/y"}, "modle: unknown field for GeneratorConfig"),
        ({"dtype": "float64"}, "dtype: must be one of"),
        ({"max_new_tokens": "16"}, "max_new_tokens: expected an integer"),
        ({"load_in_4bit": True, "load_in_8bit": True}, "choose one of 4-bit and 8-bit"),
        ({"batch_size": 0}, "batch_size: must be >= 1"),
        ({"context_token_budget": 0}, "context_token_budget: must be >= 1"),
        ({"model": " "}, "model: a hub id or a local directory is required"),
        ({"prompt": {"question_template": "Q:"}}, "prompt.question_template: must contain {question}"),
        ({"prompt": {"passage_template": "{text} {score}"}}, "prompt.passage_template: bad template"),
        ({"prompt": {"min_passage_tokens": 0}}, "prompt.min_passage_tokens: must be >= 1"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        from_dict(GeneratorConfig, data)


def test_yaml_with_a_typo_names_file_and_field(tmp_path):
    path = tmp_path / "gen.yaml"
    path.write_text("generator:\n  model: x/y\n  max_new_token: 8\n")
    with pytest.raises(ConfigError, match=r"gen\.yaml: generator\.max_new_token: unknown field"):
        GeneratorConfig.from_yaml(path, section="generator")


# ------------------------------------------------------------- example configs
def test_example_configs_load_and_match_their_purpose():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in paths} >= {"smolvlm-256m-cpu.yaml", "qwen2.5-vl-7b-4bit.yaml", "llava-onevision-qwen2-7b.yaml"}
    configs = {p.name: PipelineConfig.from_yaml(p).generator for p in paths}  # generator sections of pipeline configs
    cpu = configs["smolvlm-256m-cpu.yaml"]
    assert (cpu.model, cpu.device_map, cpu.dtype, cpu.quantization) == (
        "HuggingFaceTB/SmolVLM-256M-Instruct", "cpu", "float32", None
    )
    qwen = configs["qwen2.5-vl-7b-4bit.yaml"]
    assert (qwen.model, qwen.quantization, qwen.device_map) == ("Qwen/Qwen2.5-VL-7B-Instruct", "4bit", "auto")
    assert configs["llava-onevision-qwen2-7b.yaml"].model == "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    for name, cfg in configs.items():
        text = (CONFIGS / name).read_text()
        assert text.lstrip().startswith("#"), f"{name} must open with a comment saying what it is for"
        assert not cfg.do_sample, f"{name}: benchmarks decode greedily"


# ------------------------------------------------------------------ quantization
def test_quantization_on_cpu_is_a_clear_error_by_default():
    cfg = GeneratorConfig(model="Qwen/Qwen2.5-VL-7B-Instruct", load_in_4bit=True)
    with pytest.raises(QuantizationUnavailableError) as info:
        quantization_config(cfg, cuda=False)
    message = str(info.value)
    assert "load_in_4bit" in message and "CUDA" in message and "allow_quantization_fallback" in message
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one `error:` line


def test_quantization_without_bitsandbytes_names_the_package():
    cfg = GeneratorConfig(model="x/y", load_in_8bit=True)
    with pytest.raises(QuantizationUnavailableError, match=r"load_in_8bit: .*pip install bitsandbytes"):
        quantization_config(cfg, cuda=True, bitsandbytes=False)


def test_quantization_fallback_warns_and_returns_none():
    cfg = GeneratorConfig(model="x/y", load_in_8bit=True, allow_quantization_fallback=True)
    with pytest.warns(RuntimeWarning, match="needs a CUDA GPU.*unquantized"):
        assert quantization_config(cfg, cuda=False) is None


def test_quantization_config_on_a_cuda_machine():
    cfg = GeneratorConfig(model="x/y", load_in_4bit=True, dtype="bfloat16", bnb_4bit_quant_type="fp4")
    q = quantization_config(cfg, cuda=True, bitsandbytes=True)
    assert q.load_in_4bit and not q.load_in_8bit
    assert (q.bnb_4bit_quant_type, q.bnb_4bit_compute_dtype, q.bnb_4bit_use_double_quant) == ("fp4", torch.bfloat16, True)
    q8 = quantization_config(GeneratorConfig(model="x/y", load_in_8bit=True), cuda=True, bitsandbytes=True)
    assert q8.load_in_8bit and not q8.load_in_4bit
    kwargs = model_load_kwargs(GeneratorConfig(model="x/y", load_in_4bit=True, device_map="cpu"), q)
    assert kwargs["quantization_config"] is q and kwargs["device_map"] == "auto"  # quantized weights live on GPUs
    assert quantization_config(GeneratorConfig(model="x/y"), cuda=False) is None


def test_model_load_kwargs_for_device_maps():
    cfg = GeneratorConfig(
        model="x/y", dtype="bfloat16", device_map="auto", max_memory={0: "20GiB", "1": "20GiB", "cpu": "60GiB"},
        offload_folder="/tmp/offload", attn_implementation="sdpa", model_kwargs={"low_cpu_mem_usage": True},
    )
    kwargs = model_load_kwargs(cfg, None)
    assert kwargs == {
        "dtype": torch.bfloat16,
        "trust_remote_code": False,
        "device_map": "auto",
        "max_memory": {0: "20GiB", 1: "20GiB", "cpu": "60GiB"},
        "offload_folder": "/tmp/offload",
        "attn_implementation": "sdpa",
        "low_cpu_mem_usage": True,
    }
    assert "device_map" not in model_load_kwargs(GeneratorConfig(model="x/y", device_map=None), None)
    # dtype auto means what it means for the encoder: float32 on the CPU (this machine), bfloat16 on a GPU
    assert model_load_kwargs(GeneratorConfig(model="x/y", device_map="cpu"), None)["dtype"] == torch.float32
    expected = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else \
        (torch.float16 if torch.cuda.is_available() else torch.float32)
    assert model_load_kwargs(GeneratorConfig(model="x/y"), None)["dtype"] == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without CUDA")
def test_from_config_refuses_4bit_without_cuda_before_touching_the_hub():
    cfg = GeneratorConfig(model="nobody/not-a-model", load_in_4bit=True)
    with pytest.raises(QuantizationUnavailableError, match="needs a CUDA GPU"):
        MultimodalGenerator.from_config(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without CUDA")
def test_from_config_falls_back_to_unquantized_when_allowed(tiny_checkpoint):
    cfg = GeneratorConfig(model=str(tiny_checkpoint), load_in_4bit=True, allow_quantization_fallback=True,
                          dtype="float32", device_map="cpu", max_new_tokens=4)
    with pytest.warns(RuntimeWarning, match="loading .* unquantized"):
        gen = MultimodalGenerator.from_config(cfg)
    assert not getattr(gen.model, "is_loaded_in_4bit", False)
    assert getattr(gen.model.config, "quantization_config", None) is None
    assert {p.dtype for p in gen.model.parameters()} == {torch.float32}
    result = gen.generate([{"question": "What is this?", "image": None}])[0]
    assert result.raw_text and result.prompt_tokens > 0


# ----------------------------------------------------------------- availability
def test_unavailable_hub_model_gives_the_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        MultimodalGenerator.from_config(GeneratorConfig(model="ret2vqa-tests/not-a-cached-model"))
    message = str(info.value)
    assert "ret2vqa-tests/not-a-cached-model" in message
    assert "hf download ret2vqa-tests/not-a-cached-model" in message
    assert "generator.model" in message


def test_missing_local_directory_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelUnavailableError, match="no such local directory"):
        MultimodalGenerator.from_config(GeneratorConfig(model=str(missing)))


def test_a_text_only_checkpoint_is_refused_with_the_reason(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path)
    from generator.loading import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match=r"model type 'llama'.* not an image-text-to-text model"):
            load_model(str(tmp_path), GeneratorConfig(model=str(tmp_path), device_map="cpu"), None)


def test_yaml_config_to_answers(tiny_checkpoint, tmp_path, fixtures_dir):
    path = tmp_path / "generator.yaml"
    path.write_text(
        f"generator:\n  model: {tiny_checkpoint}\n  dtype: float32\n  device_map: cpu\n  max_new_tokens: 4\n"
        "  batch_size: 2\n  context_token_budget: 120\n  prompt:\n    instruction: Reply in one word.\n"
    )
    gen = MultimodalGenerator.from_config(GeneratorConfig.from_yaml(path, section="generator"))
    result = gen.generate([{"question": "What animal is this?", "image": fixtures_dir / "images" / "chelsea.png",
                            "passages": [{"title": "Cat", "text": "The domestic cat is a small mammal."}]}])[0]
    assert result.prompt.rstrip().endswith("Question: What animal is this?\nReply in one word.<|im_end|>\n<|im_start|>assistant")
    assert result.passages_used == 1 and result.prompt_tokens <= 120
    same = MultimodalGenerator.from_pretrained(str(tiny_checkpoint), dtype="float32", device_map="cpu", max_new_tokens=4,
                                               batch_size=2, context_token_budget=120, prompt={"instruction": "Reply in one word."})
    assert same.config == gen.config
    assert same.generate([{"question": "What animal is this?", "image": fixtures_dir / "images" / "chelsea.png",
                           "passages": [{"title": "Cat", "text": "The domestic cat is a small mammal."}]}])[0] == result


@pytest.mark.skipif(bool(missing_requirements("smolvlm")), reason="building the SmolVLM checkpoint needs num2words")
def test_a_processor_needing_a_missing_package_says_which(tmp_path, monkeypatch):
    directory = save_tiny_generator_checkpoint("smolvlm", tmp_path / "smolvlm")
    import transformers.models.smolvlm.processing_smolvlm as smolvlm_processing

    monkeypatch.setattr(smolvlm_processing, "num2words", None)  # as on a machine without num2words
    with pytest.raises(ConfigError, match=r"model: the processor of .* needs a package that is missing: .*num2words"):
        MultimodalGenerator.from_config(GeneratorConfig(model=str(directory), device_map="cpu"))
