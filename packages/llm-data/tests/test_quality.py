from __future__ import annotations

import pytest
from datatrove.data import Document

from llm_data.config import GopherConfig
from llm_data.quality import MultilingualGopherFilter

# Real sentences (written for this test) in each supported language, repeated to pass the
# minimum length; Gopher must keep them and drop the junk.
PROSE = {
    "en": "The administrator installs the package and then checks that the service is running "
    "with the new configuration file. ",
    "de": "Der Administrator installiert das Paket und prüft dann, ob der Dienst mit der neuen "
    "Konfigurationsdatei läuft und nicht abstürzt. ",
    "fr": "L'administrateur installe le paquet et vérifie ensuite que le service fonctionne "
    "avec le nouveau fichier de configuration. ",
    "es": "El administrador instala el paquete y luego comprueba que el servicio funciona con "
    "el nuevo archivo de configuración. ",
    "ja": "管理者はパッケージをインストールして、"
    "新しい設定ファイルでサービスが動いていることを確認します。",
    "zh": "管理员安装了这个软件包，然后检查服务是否在新的配置文件下正常运行，这是我们的习惯。",
}


@pytest.fixture(scope="module")
def gopher() -> MultilingualGopherFilter:
    return MultilingualGopherFilter(GopherConfig())


@pytest.mark.parametrize("language", sorted(PROSE))
def test_keeps_prose_in_every_supported_language(gopher, language):
    doc = Document(text=PROSE[language] * 12, id=language, metadata={"language": language})
    assert gopher.filter(doc) is True


def test_drops_junk_with_reasons(gopher):
    hashes = " ".join("#best #deal of the day and the offer" for _ in range(20))
    doc = Document(text=hashes, id="junk", metadata={"language": "en"})
    assert gopher.filter(doc) == (False, "gopher_too_many_hashes")
    short = Document(text=PROSE["de"], id="short", metadata={"language": "de"})
    assert gopher.filter(short) == (False, "gopher_short_doc")
    # German prose judged with English stop words would fail: the per-language list matters.
    english_only = Document(text=PROSE["de"] * 12, id="x", metadata={"language": "en"})
    assert gopher.filter(english_only) == (False, "gopher_enough_stop_words")


def test_chinese_is_segmented_into_words(gopher):
    from datatrove.utils.text import split_into_words

    words = split_into_words("我们在学习中文分词。", gopher.filters["zh"].language)
    assert words == ["我们", "在", "学习", "中文", "分词", "。"]


def test_unsupported_language_passes_and_is_counted(gopher):
    doc = Document(text="x " * 10, id="pt", metadata={"language": "pt"})
    assert gopher.filter(doc) is True
    assert gopher.stats.stats["unsupported_language"].total >= 1
    assert gopher.stats.stats["unsupported_pt"].total == 1
    assert doc.metadata["unfiltered"] == ["gopher"]


def test_a_pipeline_with_a_loaded_word_tokenizer_can_be_copied_per_task():
    """Each task runs on a deepcopy of the steps; a loaded jieba tokenizer used to break it."""
    import copy

    from llm_data.quality import word_tokenizer

    tokenizer = word_tokenizer("zh")
    assert tokenizer.word_tokenize("我们在这里学习中文")  # loads spaCy zh + jieba
    steps = [MultilingualGopherFilter(GopherConfig())]
    copies = copy.deepcopy(steps)
    assert copies[0] is not steps[0]
