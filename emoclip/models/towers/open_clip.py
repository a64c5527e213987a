"""placeholder"""


def default_bpe_vocab() -> str:
    raise NotImplementedError
