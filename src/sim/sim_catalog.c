/* sim_catalog: the installed models (what /api/tags lists) and the uploaded blobs. */
#include "sim_catalog.h"

#include "sim_log.h"

#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct blob {
    char hex[SIM_DIGEST_HEX + 1];
    int64_t size;
    struct blob *next;
} blob_t;

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static sim_model_t *models;    /* installed */
static sim_model_t *graveyard; /* deleted or replaced: freed at exit only */
static blob_t *blobs;
static int startup_index; /* orders the startup models as given */

/* ---- what the simulated weights look like ---- */

static const char TEMPLATE_LLAMA[] =
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\n\n"
    "{{ if .System }}{{ .System }}\n{{- end }}\n"
    "{{- if .Tools }}When you receive a tool call response, use the output to format an answer "
    "to the orginal user question.\n\nYou are a helpful assistant with tool calling "
    "capabilities.\n{{- end }}<|eot_id|>\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    "{{- if eq .Role \"user\" }}<|start_header_id|>user<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{{ end }}\n"
    "{{- else if eq .Role \"assistant\" }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}\n"
    "{{- end }}\n{{- end }}";

static const char TEMPLATE_CHATML[] =
    "{{- if .Messages }}\n"
    "{{- if or .System .Tools }}<|im_start|>system\n"
    "{{- if .System }}\n{{ .System }}\n{{- end }}\n"
    "{{- if .Tools }}\n\n# Tools\n\nYou may call one or more functions to assist with the user "
    "query.\n{{- end }}<|im_end|>\n{{ end }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n"
    "{{- if eq .Role \"user\" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n"
    "{{ else if eq .Role \"assistant\" }}<|im_start|>assistant\n"
    "{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}\n"
    "{{- end }}\n"
    "{{- if and (ne .Role \"assistant\") $last }}<|im_start|>assistant\n{{ end }}\n"
    "{{- end }}\n"
    "{{- else }}\n"
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    "{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}";

static const char TEMPLATE_PLAIN[] = "{{ .Prompt }}";

static const char LICENSE_TEXT[] =
    "This model is simulated by ollama-sim. Its license is the license of the model whose name "
    "it carries; no weights are distributed.";

typedef struct {
    const char *model, *tag;
    int64_t size;
    const char *family, *parameter_size, *quantization;
    int64_t parameter_count, context_length, embedding_length;
    unsigned caps;
} known_t;

/* The three models the simulator installs by default, with their real sizes. */
static const known_t KNOWN[] = {
    {"llama3.2", "latest", 2019393189, "llama", "3.2B", "Q4_K_M", 3212749888, 131072, 3072,
     SIM_CAP_COMPLETION | SIM_CAP_TOOLS},
    {"qwen2.5", "0.5b", 397821319, "qwen2", "494.03M", "Q4_K_M", 494032768, 32768, 896,
     SIM_CAP_COMPLETION | SIM_CAP_TOOLS},
    {"nomic-embed-text", "latest", 274302450, "nomic-bert", "137M", "F16", 136727040, 2048, 768,
     SIM_CAP_EMBEDDING},
};

void sim_sha256_hex(const void *data, size_t len, char out[SIM_DIGEST_HEX + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, SIM_DIGEST_HEX + 1, h, sizeof h);
}

static void digest_of(const char *kind, const char *text, char out[SIM_DIGEST_HEX + 8])
{
    char hex[SIM_DIGEST_HEX + 1];
    char seed[SIM_NAME_MAX + 64];
    int n = snprintf(seed, sizeof seed, "ollama-sim %s %s", kind, text);
    sim_sha256_hex(seed, (size_t)n, hex);
    snprintf(out, SIM_DIGEST_HEX + 8, "sha256:%s", hex);
}

static void lower(char *dst, const char *src, size_t size)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

/* "7b" -> 7e9, "0.5b" -> 5e8, "270m" -> 2.7e8 anywhere in the tag or model; 0 if none. */
static double params_in(const char *s, char *shown, size_t size)
{
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) ||
            (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '.')))
            continue;
        char *end;
        double v = strtod(p, &end);
        if ((*end == 'b' || *end == 'm') && !isalpha((unsigned char)end[1])) {
            snprintf(shown, size, "%.*s%c", (int)(end - p), p, toupper((unsigned char)*end));
            return v * (*end == 'b' ? 1e9 : 1e6);
        }
    }
    return 0;
}

static void set_layers(sim_model_t *m)
{
    char key[SIM_NAME_MAX];
    lower(key, m->full, sizeof key);
    char hex[SIM_DIGEST_HEX + 1];
    const char *texts[2] = {m->template_text, m->license};
    for (int i = 0; i < 2; i++) {
        sim_sha256_hex(texts[i], strlen(texts[i]), hex);
        snprintf(m->layers[i], sizeof m->layers[i], "sha256:%s", hex);
        m->layer_sizes[i] = (int64_t)strlen(texts[i]);
    }
    digest_of("params", key, m->layers[2]);
    m->layer_sizes[2] = m->nparams ? 40 + 45 * m->nparams : 0;
    digest_of("config", key, m->layers[3]);
    m->layer_sizes[3] = 485;
}

void sim_catalog_rehash(sim_model_t *m)
{
    sim_buf_t b = {0};
    sim_buf_fmt(&b, "%s|%s|%s|%s|%lld", m->blob, m->layers[0], m->layers[2],
                m->system ? m->system : "", (long long)m->size);
    for (int i = 0; i < m->nparams; i++)
        sim_buf_fmt(&b, "|%s=%s", m->params[i].key, m->params[i].value);
    sim_sha256_hex(b.data, b.len, m->digest);
    sim_buf_free(&b);
}

static void add_param(sim_model_t *m, const char *key, const char *value, bool quoted)
{
    if (m->nparams == SIM_MAX_PARAMS)
        return;
    snprintf(m->params[m->nparams].key, sizeof m->params[0].key, "%s", key);
    snprintf(m->params[m->nparams].value, sizeof m->params[0].value, "%s", value);
    m->params[m->nparams].quoted = quoted;
    m->nparams++;
}

sim_model_t *sim_catalog_describe(const sim_name_t *name)
{
    sim_model_t *m = calloc(1, sizeof *m);
    if (!m)
        sim_die("out of memory");
    m->name = *name;
    sim_name_full(name, m->full, sizeof m->full);
    sim_name_shortest(name, m->shortest, sizeof m->shortest);
    char model[SIM_NAME_PART_MAX], tag[SIM_NAME_PART_MAX];
    lower(model, name->model, sizeof model);
    lower(tag, name->tag, sizeof tag);

    const known_t *k = NULL;
    for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++)
        if (strcmp(KNOWN[i].model, model) == 0 && strcmp(KNOWN[i].tag, tag) == 0)
            k = &KNOWN[i];
    if (k) {
        m->size = k->size;
        snprintf(m->family, sizeof m->family, "%s", k->family);
        snprintf(m->parameter_size, sizeof m->parameter_size, "%s", k->parameter_size);
        snprintf(m->quantization, sizeof m->quantization, "%s", k->quantization);
        m->parameter_count = k->parameter_count;
        m->context_length = k->context_length;
        m->embedding_length = k->embedding_length;
        m->caps = k->caps;
    } else {
        bool embed = strstr(model, "embed") != NULL;
        const char *family = embed                                ? "bert"
                             : strncmp(model, "llama", 5) == 0    ? "llama"
                             : strncmp(model, "qwen3", 5) == 0    ? "qwen3"
                             : strncmp(model, "qwen", 4) == 0     ? "qwen2"
                             : strncmp(model, "deepseek", 8) == 0 ? "qwen2"
                             : strncmp(model, "gemma3", 6) == 0   ? "gemma3"
                             : strncmp(model, "gemma", 5) == 0    ? "gemma2"
                             : strncmp(model, "mistral", 7) == 0  ? "llama"
                             : strncmp(model, "mixtral", 7) == 0  ? "llama"
                             : strncmp(model, "phi", 3) == 0      ? "phi3"
                             : strncmp(model, "gpt-oss", 7) == 0  ? "gptoss"
                                                                  : NULL;
        if (embed && strncmp(model, "nomic", 5) == 0)
            family = "nomic-bert";
        if (family) {
            snprintf(m->family, sizeof m->family, "%s", family);
        } else {
            size_t n = 0;
            while (model[n] && isalpha((unsigned char)model[n]) && n + 1 < sizeof m->family)
                n++;
            snprintf(m->family, sizeof m->family, "%.*s", (int)(n ? n : 5), n ? model : "llama");
        }
        double count = params_in(tag, m->parameter_size, sizeof m->parameter_size);
        if (count == 0)
            count = params_in(model, m->parameter_size, sizeof m->parameter_size);
        if (count == 0) {
            count = embed ? 137e6 : 3.2e9;
            snprintf(m->parameter_size, sizeof m->parameter_size, "%s", embed ? "137M" : "3.2B");
        }
        m->parameter_count = (int64_t)count;
        snprintf(m->quantization, sizeof m->quantization, "%s", embed ? "F16" : "Q4_K_M");
        m->size = (int64_t)(count * (embed ? 2.0 : 0.6)); /* F16, or ~4.8 bits a weight */
        m->caps = embed ? SIM_CAP_EMBEDDING : SIM_CAP_COMPLETION;
        if (!embed && (strcmp(m->family, "llama") == 0 || strncmp(m->family, "qwen", 4) == 0))
            m->caps |= SIM_CAP_TOOLS;
        if (!embed && strstr(model, "coder"))
            m->caps |= SIM_CAP_INSERT;
        m->context_length = embed ? 2048 : strcmp(m->family, "llama") == 0 ? 131072 : 32768;
        m->embedding_length = embed ? 768 : 3072;
    }
    if (m->caps & SIM_CAP_EMBEDDING) {
        m->template_text = TEMPLATE_PLAIN;
        add_param(m, "num_ctx", "8192", false);
    } else if (strcmp(m->family, "llama") == 0) {
        m->template_text = TEMPLATE_LLAMA;
        add_param(m, "stop", "<|start_header_id|>", true);
        add_param(m, "stop", "<|end_header_id|>", true);
        add_param(m, "stop", "<|eot_id|>", true);
    } else if (strncmp(m->family, "qwen", 4) == 0) {
        m->template_text = TEMPLATE_CHATML;
    } else {
        m->template_text = TEMPLATE_PLAIN;
    }
    m->license = LICENSE_TEXT;
    char key[SIM_NAME_MAX];
    lower(key, m->full, sizeof key);
    digest_of("weights", key, m->blob);
    set_layers(m);
    sim_catalog_rehash(m);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    m->modified_sec = now.tv_sec;
    m->modified_nsec = now.tv_nsec;
    return m;
}

sim_model_t *sim_catalog_derive(const sim_model_t *src, const sim_name_t *name)
{
    sim_model_t *m = malloc(sizeof *m);
    if (!m)
        sim_die("out of memory");
    *m = *src;
    m->next = NULL;
    m->system = src->system ? strdup(src->system) : NULL;
    m->template_owned = src->template_owned ? strdup(src->template_owned) : NULL;
    if (m->template_owned)
        m->template_text = m->template_owned;
    m->name = *name;
    sim_name_full(name, m->full, sizeof m->full);
    sim_name_shortest(name, m->shortest, sizeof m->shortest);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    m->modified_sec = now.tv_sec;
    m->modified_nsec = now.tv_nsec;
    return m;
}

/* ---- the list ---- */

static sim_model_t *unlink_locked(const sim_name_t *name)
{
    for (sim_model_t **p = &models; *p; p = &(*p)->next) {
        if (sim_name_eqfold(&(*p)->name, name)) {
            sim_model_t *m = *p;
            *p = m->next;
            m->next = graveyard;
            graveyard = m;
            return m;
        }
    }
    return NULL;
}

void sim_catalog_publish(sim_model_t *m)
{
    pthread_rwlock_wrlock(&lock);
    unlink_locked(&m->name);
    m->next = models;
    models = m;
    pthread_rwlock_unlock(&lock);
}

int sim_catalog_add(const char *text, int64_t size)
{
    sim_name_t name;
    sim_name_parse(text, &name);
    if (!sim_name_valid(&name))
        return -1;
    sim_model_t *m = sim_catalog_describe(&name);
    if (size > 0) {
        m->size = size;
        sim_catalog_rehash(m);
    }
    /* startup models keep the order they were given in: the first is the newest */
    m->modified_sec -= ++startup_index;
    sim_catalog_publish(m);
    return 0;
}

const sim_model_t *sim_catalog_find(const sim_name_t *name)
{
    const sim_model_t *found = NULL;
    pthread_rwlock_rdlock(&lock);
    for (const sim_model_t *m = models; m; m = m->next) {
        if (sim_name_eqfold(&m->name, name)) {
            found = m;
            break;
        }
    }
    pthread_rwlock_unlock(&lock);
    return found;
}

static int by_modified_desc(const void *a, const void *b)
{
    const sim_model_t *x = *(const sim_model_t *const *)a, *y = *(const sim_model_t *const *)b;
    if (x->modified_sec != y->modified_sec)
        return x->modified_sec < y->modified_sec ? 1 : -1;
    return x->modified_nsec < y->modified_nsec ? 1 : x->modified_nsec > y->modified_nsec ? -1 : 0;
}

const sim_model_t **sim_catalog_list(size_t *count)
{
    pthread_rwlock_rdlock(&lock);
    size_t n = 0;
    for (const sim_model_t *m = models; m; m = m->next)
        n++;
    const sim_model_t **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        sim_die("out of memory");
    n = 0;
    for (const sim_model_t *m = models; m; m = m->next)
        list[n++] = m;
    pthread_rwlock_unlock(&lock);
    qsort(list, n, sizeof *list, by_modified_desc);
    *count = n;
    return list;
}

int sim_catalog_copy(const sim_name_t *src, const sim_name_t *dst)
{
    const sim_model_t *from = sim_catalog_find(src);
    if (!from)
        return -1;
    sim_model_t *m = sim_catalog_derive(from, dst);
    sim_catalog_publish(m);
    return 0;
}

int sim_catalog_delete(const sim_name_t *name)
{
    pthread_rwlock_wrlock(&lock);
    sim_model_t *m = unlink_locked(name);
    pthread_rwlock_unlock(&lock);
    return m ? 0 : -1;
}

static void free_list(sim_model_t *m)
{
    while (m) {
        sim_model_t *next = m->next;
        free(m->system);
        free(m->template_owned);
        free(m);
        m = next;
    }
}

void sim_catalog_init(void)
{
    startup_index = 0;
}

void sim_catalog_free(void)
{
    free_list(models);
    free_list(graveyard);
    models = graveyard = NULL;
    while (blobs) {
        blob_t *next = blobs->next;
        free(blobs);
        blobs = next;
    }
}

/* ---- JSON parts ---- */

void sim_catalog_details(sim_buf_t *b, const sim_model_t *m, bool with_parent)
{
    sim_buf_str(b, "{\"parent_model\":");
    sim_buf_jcstr(b, with_parent ? m->parent : "");
    sim_buf_str(b, ",\"format\":\"gguf\",\"family\":");
    sim_buf_jcstr(b, m->family);
    sim_buf_str(b, ",\"families\":[");
    sim_buf_jcstr(b, m->family);
    sim_buf_str(b, "],\"parameter_size\":");
    sim_buf_jcstr(b, m->parameter_size);
    sim_buf_str(b, ",\"quantization_level\":");
    sim_buf_jcstr(b, m->quantization);
    sim_buf_str(b, "}");
}

static void models_dir(char *buf, size_t size)
{
    const char *env = getenv("OLLAMA_MODELS");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(buf, size, "%s", env);
    else
        snprintf(buf, size, "%s/.ollama/models", home && *home ? home : "/root");
}

void sim_catalog_modelfile(sim_buf_t *b, const sim_model_t *m)
{
    char dir[512];
    models_dir(dir, sizeof dir);
    sim_buf_fmt(b,
                "# Modelfile generated by \"ollama show\"\n"
                "# To build a new Modelfile based on this, replace FROM with:\n"
                "# FROM %s\n\n"
                "FROM %s/blobs/sha256-%s\n"
                "TEMPLATE \"\"\"%s\"\"\"\n",
                m->shortest, dir, m->blob + 7, m->template_text);
    if (m->system)
        sim_buf_fmt(b, "SYSTEM \"\"\"%s\"\"\"\n", m->system);
    for (int i = 0; i < m->nparams; i++)
        sim_buf_fmt(b, "PARAMETER %s %s\n", m->params[i].key, m->params[i].value);
    sim_buf_fmt(b, "LICENSE \"\"\"%s\"\"\"\n", m->license);
}

void sim_catalog_parameters(sim_buf_t *b, const sim_model_t *m)
{
    for (int i = 0; i < m->nparams; i++) {
        if (i)
            sim_buf_add(b, "\n", 1);
        sim_buf_fmt(b, "%-30s ", m->params[i].key);
        if (m->params[i].quoted)
            sim_buf_goquote(b, m->params[i].value);
        else
            sim_buf_str(b, m->params[i].value);
    }
}

void sim_catalog_model_info(sim_buf_t *b, const sim_model_t *m)
{
    const char *arch = m->family;
    sim_buf_str(b, "{\"general.architecture\":");
    sim_buf_jcstr(b, arch);
    sim_buf_str(b, ",\"general.basename\":");
    sim_buf_jcstr(b, m->name.model);
    sim_buf_fmt(b, ",\"general.file_type\":%d", strcmp(m->quantization, "F16") == 0 ? 1 : 15);
    sim_buf_fmt(b, ",\"general.parameter_count\":%lld", (long long)m->parameter_count);
    sim_buf_str(b, ",\"general.quantization_version\":2");
    sim_buf_fmt(b, ",\"%s.context_length\":%lld", arch, (long long)m->context_length);
    sim_buf_fmt(b, ",\"%s.embedding_length\":%lld", arch, (long long)m->embedding_length);
    sim_buf_fmt(b, ",\"%s.block_count\":%d", arch, m->caps & SIM_CAP_EMBEDDING ? 12 : 28);
    sim_buf_fmt(b, ",\"%s.attention.head_count\":%d", arch, m->caps & SIM_CAP_EMBEDDING ? 12 : 24);
    sim_buf_str(b, ",\"tokenizer.ggml.model\":");
    sim_buf_jcstr(b, m->caps & SIM_CAP_EMBEDDING ? "bert" : "gpt2");
    sim_buf_str(b, ",\"tokenizer.ggml.tokens\":[],\"tokenizer.ggml.token_type\":[]}");
}

/* ---- blobs ---- */

bool sim_blob_valid(const char *d)
{
    if (strncmp(d, "sha256", 6) != 0 || (d[6] != ':' && d[6] != '-'))
        return false;
    for (int i = 0; i < SIM_DIGEST_HEX; i++)
        if (!isxdigit((unsigned char)d[7 + i]))
            return false;
    return d[7 + SIM_DIGEST_HEX] == '\0';
}

/* Blob identity ignores the separator and the case of the hex, as the blob path does. */
static blob_t *blob_find_locked(const char *d)
{
    for (blob_t *b = blobs; b; b = b->next)
        if (strcasecmp(b->hex, d + 7) == 0)
            return b;
    return NULL;
}

static bool model_layer_locked(const char *d)
{
    for (const sim_model_t *m = models; m; m = m->next) {
        if (strcasecmp(m->blob + 7, d + 7) == 0)
            return true;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(m->layers[i] + 7, d + 7) == 0)
                return true;
    }
    return false;
}

bool sim_blob_exists(const char *d)
{
    pthread_rwlock_rdlock(&lock);
    bool found = blob_find_locked(d) || model_layer_locked(d);
    pthread_rwlock_unlock(&lock);
    return found;
}

int64_t sim_blob_size(const char *d)
{
    pthread_rwlock_rdlock(&lock);
    blob_t *b = blob_find_locked(d);
    int64_t size = b ? b->size : -1;
    pthread_rwlock_unlock(&lock);
    return size;
}

void sim_blob_add(const char *d, int64_t size)
{
    pthread_rwlock_wrlock(&lock);
    if (!blob_find_locked(d)) {
        blob_t *b = calloc(1, sizeof *b);
        if (!b)
            sim_die("out of memory");
        snprintf(b->hex, sizeof b->hex, "%s", d + 7);
        b->size = size;
        b->next = blobs;
        blobs = b;
    }
    pthread_rwlock_unlock(&lock);
}
