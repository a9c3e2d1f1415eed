// Umbrella header of the tokenizers: the byte-level tokenizer of the bundled
// models and the Hugging Face byte-level BPE tokenizer (tokenizer.json).
#pragma once

#include "lmrl/model/tokenizer/bpe_tokenizer.hpp"
#include "lmrl/model/tokenizer/byte_tokenizer.hpp"
#include "lmrl/model/tokenizer/pre_tokenizer.hpp"
#include "lmrl/model/tokenizer/unicode.hpp"
