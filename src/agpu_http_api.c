/* agpu's own API, under /agpu/v1: the mesh as this node sees it (peers), where a request for
 * a model would go now (route), and draining. */
#include "agpu_http_private.h"

#include "agpu_json.h"
#include "agpu_log.h"
#include "agpu_mesh.h"
#include "agpu_text.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result answer_json(struct MHD_Connection *conn, request_t *req, char *body)
{
    if (!body)
        return MHD_NO;
    enum MHD_Result ok =
        http_answer(conn, req, MHD_HTTP_OK, "application/json; charset=utf-8", body, strlen(body));
    free(body);
    return ok;
}

/* GET /agpu/v1/route?model=M: where a request for M would go now, and why. */
static enum MHD_Result answer_route(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                    const char *path)
{
    const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "model");
    char model[AGPU_MSG_MODEL_NAME_MAX + 1];
    agpu_text_copy(model, sizeof model, arg ? arg : "");
    for (char *p = model; *p; p++)
        *p = *p == '+' ? ' ' : *p;
    MHD_http_unescape(model); /* kept escaped for forwarding; decoded here */
    if (!model[0])
        return http_answer_error(conn, req, path, MHD_HTTP_BAD_REQUEST, "model is required");
    http_set_model(req, model);
    if (!req->model[0])
        return http_answer_error(conn, req, path, MHD_HTTP_BAD_REQUEST, "invalid model name");
    req->kind = AGPU_ROUTE_SLOT;
    agpu_view_t *view = agpu_mesh_view(self->options.mesh);
    agpu_route_plan_t plan;
    agpu_route_candidate_t *candidates = view ? http_plan(self, req, view, false, &plan) : NULL;
    char *body = candidates ? agpu_json_route(view, model, req->model, candidates, &plan) : NULL;
    free(candidates);
    agpu_view_unref(&view);
    return answer_json(conn, req, body);
}

/* /agpu/...: what this node knows of the mesh, and draining. */
enum MHD_Result http_answer_api(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                const char *path, const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool drain = strcmp(path, "/agpu/v1/drain") == 0;
    if (strcmp(path, "/agpu/v1/peers") != 0 && strcmp(path, "/agpu/v1/route") != 0 && !drain &&
        strcmp(path, "/agpu/v1/undrain") != 0)
        return http_answer_error(conn, req, path, MHD_HTTP_NOT_FOUND, "no such agpu endpoint");
    if (!self->options.mesh)
        return http_answer_error(conn, req, path, MHD_HTTP_SERVICE_UNAVAILABLE,
                                 "this node is not in a mesh");
    if (strcmp(path, "/agpu/v1/peers") == 0 || strcmp(path, "/agpu/v1/route") == 0) {
        if (!get)
            return http_answer_error(conn, req, path, MHD_HTTP_METHOD_NOT_ALLOWED,
                                     "method not allowed");
        if (strcmp(path, "/agpu/v1/route") == 0)
            return answer_route(self, conn, req, path);
        agpu_view_t *view = agpu_mesh_view(self->options.mesh);
        char *body = view ? agpu_json_peers(view, agpu_clock_ms()) : NULL;
        agpu_view_unref(&view);
        return answer_json(conn, req, body);
    }
    if (strcmp(method, "POST") != 0)
        return http_answer_error(conn, req, path, MHD_HTTP_METHOD_NOT_ALLOWED,
                                 "method not allowed");
    if (drain != agpu_mesh_draining(self->options.mesh))
        agpu_info("%s: %s", drain ? "draining" : "undraining",
                  drain ? "no new work; finishing what is under way" : "taking work again");
    agpu_mesh_set_draining(self->options.mesh, drain);
    return answer_json(conn, req, agpu_json_drain(self->node_name, drain));
}
