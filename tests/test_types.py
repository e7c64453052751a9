from monitor.types import Hit, RuleMatch


def test_rule_match_terms_are_unique_in_first_hit_order() -> None:
    match = RuleMatch(
        rule="r",
        hits=(
            Hit("Azure", "title", 0, 5),
            Hit("DeepSeek", "content", 3, 11),
            Hit("Azure", "content", 20, 25),
        ),
    )
    assert match.terms == ("Azure", "DeepSeek")
