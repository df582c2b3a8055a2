/* sim_gen: deterministic model output: seeded words, token counts, unit embeddings. */
#include "sim_gen.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

static const char *const WORDS[] = {
    " the",   " a",      " model",  " answer",  " is",    " that",  " it",     " can",
    " be",    " simple", " and",    " clear",   " of",    " to",    " in",     " with",
    " data",  " each",   " server", " request", " token", " this",  " we",     " will",
    " see",   " how",    " many",   " fast",    " time",  " one",   " more",   " light",
    " river", " stone",  " quiet",  " bright",  " over",  " under", " around", " story",
    " world", " small",  " large",  " green",   " blue",  " open",  " close",  " learn",
    " build", " test",   " run",    " think",   " again", " here",  " there",  " very",
    " good",  " new",    " old",    " first",   " last",  " next",  " word",   " line",
};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

/* Vocabulary ids: words sit above the byte tokens and below special tokens, as in a
 * typical 128k vocabulary. */
#define WORD_ID_BASE 1000
#define VOCAB_SIZE 128000

uint64_t sim_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

unsigned sim_gen_next_word(uint64_t *state)
{
    return (unsigned)(sim_rng_next(state) % NWORDS);
}

const char *sim_gen_word(unsigned index, size_t *len)
{
    const char *w = WORDS[index % NWORDS];
    *len = strlen(w);
    return w;
}

int sim_gen_word_id(unsigned index)
{
    return WORD_ID_BASE + (int)(index % NWORDS);
}

/* Walk text as words and punctuation; call emit for each simulated token. */
static int tokens(const char *text, size_t len, int *ids)
{
    int count = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (isspace(c)) {
            i++;
            continue;
        }
        size_t start = i;
        if (isalnum(c) || c >= 0x80) {
            while (i < len && (isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80))
                i++;
        } else {
            i++;
        }
        size_t wlen = i - start;
        for (size_t off = 0; off < wlen; off += 4) {
            size_t piece = wlen - off < 4 ? wlen - off : 4;
            if (ids) {
                uint64_t h = sim_hash(SIM_HASH_INIT, text + start + off, piece);
                ids[count] = (int)(h % VOCAB_SIZE);
            }
            count++;
        }
    }
    return count;
}

int sim_gen_count_tokens(const char *text, size_t len)
{
    return tokens(text, len, NULL);
}

int sim_gen_token_ids(const char *text, size_t len, int *ids)
{
    return tokens(text, len, ids);
}

void sim_gen_normalize(float *v, int dim)
{
    float sum = 0;
    for (int i = 0; i < dim; i++)
        sum += v[i] * v[i];
    double root = sqrt((double)sum);
    float norm = (float)(1.0 / (root > 1e-12 ? root : 1e-12));
    for (int i = 0; i < dim; i++)
        v[i] *= norm;
}

void sim_gen_embedding(const char *model, const char *text, size_t len, float *out, int dim)
{
    uint64_t state = sim_hash(SIM_HASH_INIT, model, strlen(model));
    state = sim_hash(state, "\0", 1);
    state = sim_hash(state, text, len);
    for (int i = 0; i < dim; i++) {
        /* uniform in [-1, 1): 24 random bits are all a float32 holds */
        uint64_t r = sim_rng_next(&state) >> 40;
        out[i] = (float)((double)r / (double)(1 << 23) - 1.0);
    }
    sim_gen_normalize(out, dim);
}
