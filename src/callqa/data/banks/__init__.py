"""Phrase bank data files, one `<name>.yaml` per bank (read by callqa.data.phrases)."""
