/* sim_routes: the handlers behind each route (see the table in sim_http.c). */
#ifndef SIM_ROUTES_H
#define SIM_ROUTES_H

#include "sim_http.h"

/* sim_native.c */
enum MHD_Result sim_route_root(sim_req_t *req);
enum MHD_Result sim_route_version(sim_req_t *req);
enum MHD_Result sim_route_tags(sim_req_t *req);
enum MHD_Result sim_route_ps(sim_req_t *req);
enum MHD_Result sim_route_show(sim_req_t *req);
enum MHD_Result sim_route_generate(sim_req_t *req);
enum MHD_Result sim_route_chat(sim_req_t *req);
enum MHD_Result sim_route_embed(sim_req_t *req);
enum MHD_Result sim_route_embeddings(sim_req_t *req);

/* sim_manage.c */
enum MHD_Result sim_route_pull(sim_req_t *req);
enum MHD_Result sim_route_push(sim_req_t *req);
enum MHD_Result sim_route_create(sim_req_t *req);
enum MHD_Result sim_route_copy(sim_req_t *req);
enum MHD_Result sim_route_delete(sim_req_t *req);
enum MHD_Result sim_route_blob(sim_req_t *req);

/* sim_openai.c */
enum MHD_Result sim_route_oai_chat(sim_req_t *req);
enum MHD_Result sim_route_oai_completions(sim_req_t *req);
enum MHD_Result sim_route_oai_embeddings(sim_req_t *req);
enum MHD_Result sim_route_oai_models(sim_req_t *req);
enum MHD_Result sim_route_oai_model(sim_req_t *req);

#endif
