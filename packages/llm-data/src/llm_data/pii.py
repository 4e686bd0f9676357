"""PII masking: e-mail and IP addresses (datatrove's patterns) and phone numbers (phonenumbers).

datatrove's PIIFormatter replaces e-mails and public IPs but counts nothing and has no phone
pattern; this step reuses its replacers (patterns, IP validator, replacement cycles), counts
each kind per document (`metadata["pii"]`) and in the stats (`pii_email`, `pii_ip`,
`pii_phone`, `documents_with_pii`), and finds phone numbers with Google's libphonenumber port.
"""

from __future__ import annotations

import re

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.formatters.pii import PIIFormatter, PIIReplacer

from llm_data.config import PIIConfig

__all__ = ["PIIMasker", "mask_pii"]

_WRITTEN_AS_PHONE = re.compile(r"^\+|\d[\s.\-/)]+\(?\d")


def _replace_counted(replacer: PIIReplacer, text: str) -> tuple[str, int]:
    """`replacer.replace(text)` and how many matches it replaced (valid ones only)."""
    count = 0

    def substitute(match) -> str:
        nonlocal count
        found = match.group(0)
        if replacer.validator and not replacer.validator(found):
            return found  # e.g. a private or loopback IP: not personal data
        count += 1
        replacement = replacer.replacements[replacer._replace_i]
        replacer._replace_i = (replacer._replace_i + 1) % len(replacer.replacements)
        return replacement

    return replacer.regex.sub(substitute, text), count


def _mask_phones(text: str, region: str, replacement: str) -> tuple[str, int]:
    import phonenumbers

    # VALID leniency: the number must be a possible, assigned number range of its region.
    found = phonenumbers.PhoneNumberMatcher(text, region or None, phonenumbers.Leniency.VALID)
    # libphonenumber also takes bare digit runs ("2147483648" in code is a valid US number);
    # a number written as one (with "+", a space, "-", "." or "()") is kept to, on top of it.
    matches = [m for m in found if _WRITTEN_AS_PHONE.search(m.raw_string)]
    for match in reversed(matches):  # from the end, so earlier offsets stay right
        text = text[: match.start] + replacement + text[match.end :]
    return text, len(matches)


def mask_pii(text: str, config: PIIConfig, formatter: PIIFormatter) -> tuple[str, dict[str, int]]:
    """`text` with the PII kinds `config` selects replaced, and the count of each (non-zero)."""
    counts = {}
    if config.emails:
        text, counts["email"] = _replace_counted(formatter.emails_replacer, text)
    if config.ips:
        text, counts["ip"] = _replace_counted(formatter.ip_replacer, text)
    if config.phones:
        text, counts["phone"] = _mask_phones(text, config.phone_region, config.phone_replacement)
    return text, {kind: n for kind, n in counts.items() if n}


class PIIMasker(PipelineStep):
    """Replace e-mails and public IP addresses (and phone numbers, if enabled) in every document.

    Each document that had any gets `metadata["pii"] = {"email": n, "ip": n, "phone": n}`
    (non-zero kinds only); the step's stats count each kind and the documents touched.
    """

    name = "📞 PII masking"
    type = "✂️ - FORMAT"

    def __init__(self, config: PIIConfig | None = None):
        super().__init__()
        self.config = config or PIIConfig()
        self.formatter = PIIFormatter(remove_emails=True, remove_ips=True)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("total")
            with self.track_time():
                doc.text, counts = mask_pii(doc.text, self.config, self.formatter)
            if counts:
                doc.metadata["pii"] = counts
                self.stat_update("documents_with_pii")
                for kind, n in counts.items():
                    self.stat_update(f"pii_{kind}", value=n)
            yield doc
