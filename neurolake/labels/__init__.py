"""Labels of frames and utterances: CTC decoding and alignment, WER, lexicon and IPA, frame labelling."""
