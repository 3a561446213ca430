// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "common/json_rpc.h"

namespace gvm::client {

// One human line for an audit record, e.g.
// "2026-11-23T10:30:08.123456Z deny   http POST api.openai.com:443/v1/chat -> 403 rule=deny-shadow-models sandbox=sb1"
// In monitor mode a denial reads "would deny". Missing fields, and a status
// of 0 (the agent got no HTTP answer), are left out. A held request adds
// request=ID; an action other than allow adds the reason, quoted.
// Control characters (agent-chosen hosts and paths end up here) are printed
// as \xNN, so a record can never drive the terminal. Never throws on a
// malformed record.
std::string formatDecision(const rpc::Json &record);

} // namespace gvm::client
