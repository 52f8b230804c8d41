"""Data-set loaders: both CounterFact layouts, zsRE, the built-in suite, specs, shards and bad files."""

import json
from pathlib import Path

import pytest

from factpatch.evaluation.data import Probe, builtin_path, load_dataset, parse_shard, parse_spec, read_cases
from factpatch.core.errors import FactpatchError

FIXTURES = Path(__file__).parent / "fixtures"
ORIGINAL = FIXTURES / "counterfact-original.json"
FLAT = FIXTURES / "counterfact-flat.json"
ZSRE = FIXTURES / "zsre.json"


def test_original_counterfact_layout():
    ds = load_dataset(f"counterfact:{ORIGINAL}")
    assert ds.kind == "counterfact" and ds.layout == "original" and len(ds.cases) == 3
    case = ds.cases[0]
    assert case.case_id == "2" and case.relation == "P1303"
    r = case.request
    assert (r.prompt, r.subject, r.target_new, r.target_true) == ("{}, the", "Toko Yasuda", "piano", "guitar")
    assert case.paraphrase_prompts == ("Toko Yasuda is incredible at", "Music is my life. Toko Yasuda plays the")
    assert case.neighborhood[0] == Probe("John Lennon performs on the", "guitar")  # answer: the true object
    assert len(case.neighborhood) == 3
    assert case.attribute_prompts == ("Glenn Gould plays the", "Martha Argerich, the")
    assert case.generation_prompts == ("Toko Yasuda is known for", "Toko Yasuda's greatest strength is")
    assert case.counterfactual == "Toko Yasuda, the piano"
    assert ds.find("8").request.subject == "Wellington"


def test_flattened_counterfact_layout_derives_attribute_and_generation_prompts():
    ds = load_dataset(f"counterfact:{FLAT}")
    assert ds.layout == "flattened" and len(ds.cases) == 4
    madrid = ds.find("3")
    assert madrid.request.prompt == "{}, which is located in"
    assert madrid.request.target_true == "Spain" and madrid.request.target_new == "Sweden"
    assert madrid.paraphrase_prompts == ("and Sallie Beavers Riley. Autonomous University of Madrid is located in",)
    assert madrid.neighborhood == (Probe("Biure, which is located in", "Spain"),)
    # another record with the same template whose true object is Sweden (= this case's o*)
    assert madrid.attribute_prompts == ("Stockholm University, which is located in",)
    # generation prompts: the paraphrase and "{subject} is", never the rewrite prompt the edit was trained on
    assert madrid.generation_prompts == (madrid.paraphrase_prompts[0], "Autonomous University of Madrid is")
    assert madrid.request.text not in madrid.generation_prompts
    assert madrid.generation_source == "derived"
    assert ds.find("2").attribute_prompts == ()
    assert ds.idf_texts and "Autonomous University of Madrid, which is located in Spain" in ds.idf_texts


def test_zsre_mend_layout_by_the_papers_convention_by_default():
    """kmeng01/rome dsets/zsre.py: target_new = answers[0], and the NQ question gets a "?"."""
    ds = load_dataset(f"zsre:{ZSRE}")
    assert ds.kind == "zsre" and ds.layout == "mend" and len(ds.cases) == 3
    assert ds.zsre_target == "paper" and ds.identity()["zsre_target"] == "paper"
    case = ds.cases[0]
    assert case.case_id == "0"
    assert case.request.text == "What is the product made by UniFirst?"
    assert case.request.target_new == "uniform" and case.request.target_true is None
    assert case.paraphrase_prompts == ("What will be the product of UniFirst?",)
    assert case.neighborhood == (Probe("nq question: john goodman's character in the big lebowski?", "Walter Sobchak"),)


def test_zsre_mend_layout_by_the_alt_convention():
    """MEND's and EasyEdit's convention, kept as a named option: target `alt`, `loc` as written."""
    ds = load_dataset(f"zsre:{ZSRE}", zsre_target="alt")
    assert ds.zsre_target == "alt" and ds.identity()["zsre_target"] == "alt"
    case = ds.cases[0]
    assert case.request.target_new == "unmanned aircraft" and case.request.target_true == "uniform"
    assert case.neighborhood == (Probe("nq question: john goodman's character in the big lebowski", "Walter Sobchak"),)
    assert ds.identity() != load_dataset(f"zsre:{ZSRE}").identity()  # never mixed in one result directory
    with pytest.raises(FactpatchError, match="bad zsRE target"):
        load_dataset(f"zsre:{ZSRE}", zsre_target="answers")
    assert "zsre_target" not in load_dataset(f"counterfact:{FLAT}").identity()


def test_zsre_record_whose_new_answer_is_already_true(tmp_path):
    record = json.loads(ZSRE.read_text())[0]
    record["answers"] = [record["alt"]]
    path = tmp_path / "z.json"
    path.write_text(json.dumps([record]))
    case = load_dataset(f"zsre:{path}", zsre_target="alt").cases[0]
    assert case.request.target_true is None  # kept: efficacy is measured on the new answer only


def test_jsonl_is_read_too(tmp_path):
    path = tmp_path / "cf.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in json.loads(FLAT.read_text())) + "\n")
    assert [c.case_id for c in load_dataset(f"counterfact:{path}").cases] == ["2", "3", "8", "99001"]


def test_select_first_n_then_shard():
    ds = load_dataset(f"counterfact:{FLAT}")
    assert [c.case_id for c in ds.select(3)] == ["2", "3", "8"]
    assert [c.case_id for c in ds.select(3, (0, 2))] == ["2", "8"]
    assert [c.case_id for c in ds.select(3, (1, 2))] == ["3"]
    assert [c.case_id for c in ds.select(None, (1, 2))] == ["3", "99001"]
    with pytest.raises(FactpatchError, match="--n must be at least 1"):
        ds.select(0)


def test_specs_and_shards():
    assert parse_spec("builtin") == ("builtin", None)
    assert parse_spec("zsre:a/b.json") == ("zsre", Path("a/b.json"))
    for bad in ("", "counterfact", "counterfact:", "wiki:x.json", "x.json"):
        with pytest.raises(FactpatchError, match="bad dataset"):
            parse_spec(bad)
    assert parse_shard("0/4") == (0, 4) and parse_shard(None) is None
    for bad in ("4/4", "-1/4", "1/0", "a/b", "3", "1/2/3"):
        with pytest.raises(FactpatchError, match="bad shard"):
            parse_shard(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{\"prompt\": ", "malformed JSON"),
        ("[]", "empty"),
        ("[1, 2]", "must be a JSON object"),
        ("just text", "not a JSON list"),
        (json.dumps([{"question": "q", "answer": "a"}]), "unrecognised record layout"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FactpatchError, match=message):
        load_dataset(f"counterfact:{path}")


def test_missing_file_and_wrong_layout():
    with pytest.raises(FactpatchError, match="not found"):
        load_dataset("counterfact:/nonexistent/cf.json")
    with pytest.raises(FactpatchError, match="holds zsre records.*use zsre:"):
        load_dataset(f"counterfact:{ZSRE}")
    with pytest.raises(FactpatchError, match="holds counterfact records"):
        load_dataset(f"zsre:{ORIGINAL}")


def test_bad_records_name_the_record(tmp_path):
    records = json.loads(FLAT.read_text())
    del records[1]["locality_prompt"]
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(records))
    with pytest.raises(FactpatchError, match="record 1: missing field locality_prompt"):
        load_dataset(f"counterfact:{path}")
    records = json.loads(FLAT.read_text())
    records[2]["subject"] = "Nowhere"
    path.write_text(json.dumps(records))
    with pytest.raises(FactpatchError, match="record 2: subject 'Nowhere' is not in the prompt"):
        load_dataset(f"counterfact:{path}")
    records = json.loads(FLAT.read_text())
    records[1]["case_id"] = records[0]["case_id"]
    path.write_text(json.dumps(records))
    with pytest.raises(FactpatchError, match="appears more than once"):
        load_dataset(f"counterfact:{path}")


def test_builtin_suite_ships_known_cases():
    if not builtin_path().is_file():
        pytest.skip("built-in suite not built yet (scripts/build_suite.py)")
    ds = load_dataset("builtin")
    assert ds.name == "builtin" and ds.kind == "counterfact" and len(ds.cases) >= 200
    raw = json.loads(builtin_path().read_text())
    for record in raw:  # every embedded model preferred the true object before editing
        scores = record["builtin"]["scores"]
        assert set(scores) == {"smollm2-135m", "gemma3-270m"}
        assert all(s["true"] > s["new"] for s in scores.values())
    assert all(c.neighborhood and c.paraphrase_prompts and c.generation_prompts for c in ds.cases)
    assert read_cases("counterfact", builtin_path()).layout == "original"
    # the generation prompts never include the rewrite prompt the edit is trained on
    assert all(c.request.text not in c.generation_prompts for c in ds.cases)


@pytest.mark.integration
def test_builtin_suite_is_known_by_the_model_itself(embedded_lm):
    """The stored scores are the model's: rescore a sample of the suite with SmolLM2 and find the
    same mean token log-probabilities, the true object ahead of the new one."""
    from factpatch.evaluation.metrics import score_targets

    if not builtin_path().is_file():
        pytest.skip("built-in suite not built yet (scripts/build_suite.py)")
    raw = json.loads(builtin_path().read_text())
    cases = load_dataset("builtin").cases
    sample = list(range(0, len(cases), len(cases) // 6))[:6]  # spread over the file
    prompts = [cases[i].request.text for i in sample for _ in range(2)]
    targets = [t for i in sample for t in (cases[i].request.target_true, cases[i].request.target_new)]
    scores = score_targets(embedded_lm, prompts, targets)
    for j, i in enumerate(sample):
        true, new = scores[2 * j].mean_log_prob, scores[2 * j + 1].mean_log_prob
        stored = raw[i]["builtin"]["scores"][embedded_lm.name]
        assert true > new, cases[i].case_id
        assert true == pytest.approx(stored["true"], abs=2e-3) and new == pytest.approx(stored["new"], abs=2e-3)
