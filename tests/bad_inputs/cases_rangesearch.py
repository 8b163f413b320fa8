"""Bad-input cases: quant.range_search (fast | exact)."""


def cases(m):
    return [
        m.Case("config_range_search_unknown", 78,
               r'quant\.range_search: expected one of "fast", "exact", got the string "quick"',
               sets=["quant.range_search=quick"], what="range search method not fast/exact"),
        m.Case("config_range_search_number", 78, r"quant\.range_search: expected one of .*got",
               config=dict(m.tiny_config(), quant=dict(m.tiny_config()["quant"], range_search=1)),
               what="range search method given as a number"),
    ]
