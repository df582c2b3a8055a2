/* sim_gen: deterministic model output: seeded words, token counts, unit embeddings. */
#ifndef SIM_GEN_H
#define SIM_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Replies are 8..48 tokens unless num_predict says otherwise. */
#define SIM_GEN_MIN_TOKENS 8
#define SIM_GEN_MAX_TOKENS 48

uint64_t sim_hash(uint64_t h, const void *data, size_t len);
#define SIM_HASH_INIT 0xcbf29ce484222325ULL

/* splitmix64: one state word, good enough statistics, trivially reproducible. */
static inline uint64_t sim_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The next token: an index into the word list. */
unsigned sim_gen_next_word(uint64_t *state);
/* " word" (leading space included). */
const char *sim_gen_word(unsigned index, size_t *len);
/* The id a word has in the simulated vocabulary (what "context" carries). */
int sim_gen_word_id(unsigned index);

/* Roughly what a BPE tokenizer would count: about one token per four bytes of a word,
 * one per punctuation mark. */
int sim_gen_count_tokens(const char *text, size_t len);
/* Append the simulated token ids of text to ids (capacity checked by the caller via
 * sim_gen_count_tokens). Returns how many were written. */
int sim_gen_token_ids(const char *text, size_t len, int *ids);

/* A unit-length vector of dim floats for (model, text). */
void sim_gen_embedding(const char *model, const char *text, size_t len, float *out, int dim);
/* Go's normalize(): scale to unit length in float32 arithmetic. */
void sim_gen_normalize(float *v, int dim);

#endif
