//! What the agent does with one DNS query: answer it from the [`Index`] (names of the cluster
//! domain, reverse names it knows), forward it to the node's resolvers (every other name), or
//! ignore it (not a query). Pure: the server does the I/O.
//!
//! Answers are authoritative with TTL 5 s (CoreDNS's default); a name of the domain that does
//! not exist is NXDOMAIN, a type it has no records of (AAAA: the cluster is IPv4) NODATA, both
//! with the zone's SOA in the authority section (negative TTL 5 s); a name whose objects are not
//! listed yet is SERVFAIL, so no client caches a false NXDOMAIN. A CNAME into the domain is
//! followed here; one out of it (ExternalName) is left to the server to resolve upstream.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, SOA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use super::records::{Index, Lookup, fqdn};

/// The TTL of every answer and of negative answers.
pub const TTL: u32 = 5;

/// The largest UDP payload the agent advertises and sends (the DNS flag day 2020 figure).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How many CNAMEs inside the domain are followed before giving up (SERVFAIL).
const MAX_CNAME_HOPS: usize = 8;

/// What to do with a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Not a query: drop it.
    Ignore,
    /// Send this reply.
    Reply(Message),
    /// Send this reply, after appending what the node's resolvers answer to `target` (the
    /// CNAME target outside the domain of an ExternalName Service): see [`merge_chased`].
    Chase {
        /// The reply so far (ending in the CNAME).
        reply: Message,
        /// The question to ask upstream.
        target: Query,
    },
    /// Forward the query as it is to the node's resolvers.
    Forward,
}

/// Decides what to do with `query`.
pub fn decide(query: &Message, index: &Index) -> Decision {
    if query.metadata.message_type != MessageType::Query {
        return Decision::Ignore;
    }
    if query.metadata.op_code != OpCode::Query {
        return Decision::Reply(reply(query, ResponseCode::NotImp));
    }
    let [q] = query.queries.as_slice() else {
        return Decision::Reply(reply(query, ResponseCode::FormErr));
    };
    if index.in_zone(q.name()) {
        let answer = answer(query, index);
        return match chase_target(&answer, q.query_type(), index) {
            Some(target) => Decision::Chase {
                reply: answer,
                target,
            },
            None => Decision::Reply(answer),
        };
    }
    if q.query_type() == RecordType::PTR && matches!(index.lookup(q.name()), Lookup::Records(_)) {
        return Decision::Reply(answer(query, index));
    }
    Decision::Forward
}

/// An empty reply to `query` with `code`: same id, question and RD, recursion available, an
/// OPT record when the query had one.
pub fn reply(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

/// SERVFAIL for `query` (no upstream answered, or the index is not ready).
pub fn servfail(query: &Message) -> Message {
    reply(query, ResponseCode::ServFail)
}

fn soa(index: &Index) -> Record {
    let zone = index.zone();
    let named = |prefix: &str| fqdn(&format!("{prefix}.{zone}")).unwrap_or_else(|| zone.clone());
    let data = SOA::new(
        named("ns.dns"),
        named("hostmaster"),
        index.serial(),
        7200,
        1800,
        86400,
        TTL,
    );
    Record::from_rdata(zone.clone(), TTL, RData::SOA(data))
}

/// The authoritative answer to the (single) question of `query`, a name of the domain or a
/// reverse name the index knows.
pub fn answer(query: &Message, index: &Index) -> Message {
    let Some(q) = query.queries.first() else {
        return reply(query, ResponseCode::FormErr);
    };
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        return reply(query, ResponseCode::Refused);
    }
    let qtype = q.query_type();
    let mut m = reply(query, ResponseCode::NoError);
    m.metadata.authoritative = true;
    let mut owner = q.name().clone();
    for _ in 0..MAX_CNAME_HOPS {
        let records = match index.lookup(&owner) {
            Lookup::Pending => return servfail(query),
            Lookup::Missing => {
                m.metadata.response_code = ResponseCode::NXDomain;
                m.add_authority(soa(index));
                return m;
            }
            Lookup::Empty if qtype == RecordType::SOA && owner == *index.zone() => {
                m.add_answer(soa(index));
                return m;
            }
            Lookup::Empty => Vec::new(),
            Lookup::Records(r) => r,
        };
        let cname = records.iter().find_map(|r| match r {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        });
        if let Some(target) = cname.filter(|_| qtype != RecordType::CNAME) {
            m.add_answer(Record::from_rdata(
                owner,
                TTL,
                RData::CNAME(CNAME(target.clone())),
            ));
            if !index.in_zone(&target) {
                return m;
            }
            owner = target;
            continue;
        }
        let matching: Vec<RData> = records
            .into_iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .collect();
        if matching.is_empty() {
            m.add_authority(soa(index));
            return m;
        }
        for data in &matching {
            if let RData::SRV(srv) = data
                && let Lookup::Records(targets) = index.lookup(&srv.target)
            {
                let additional = targets.into_iter().filter(|t| t.record_type() == RecordType::A);
                m.add_additionals(additional.map(|t| Record::from_rdata(srv.target.clone(), TTL, t)));
            }
        }
        m.add_answers(
            matching
                .into_iter()
                .map(|d| Record::from_rdata(owner.clone(), TTL, d)),
        );
        return m;
    }
    servfail(query)
}

/// The question to ask upstream when `answer` ends in a CNAME out of the domain and holds no
/// records of the type asked.
pub fn chase_target(answer: &Message, qtype: RecordType, index: &Index) -> Option<Query> {
    if qtype == RecordType::CNAME || answer.answers.iter().any(|r| r.record_type() == qtype) {
        return None;
    }
    match answer.answers.last().map(|r| &r.data) {
        Some(RData::CNAME(c)) if !index.in_zone(&c.0) => Some(Query::query(c.0.clone(), qtype)),
        _ => None,
    }
}

/// A query for `target` (as the client asked: same id, RD and EDNS).
pub fn chase_query(client: &Message, target: Query) -> Message {
    let mut m = Message::new(client.metadata.id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(target);
    if client.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

/// `reply` with the upstream's answers to the chased CNAME target appended (and its NXDOMAIN,
/// which RFC 6604 says belongs to the last name of the chain).
pub fn merge_chased(mut reply: Message, upstream: &Message) -> Message {
    reply.add_answers(upstream.answers.iter().cloned());
    if upstream.metadata.response_code == ResponseCode::NXDomain {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply.metadata.authoritative = false;
    reply
}

/// The most a UDP reply to `query` may hold: 512 bytes, or what its EDNS record advertises
/// (up to [`MAX_UDP_PAYLOAD`]).
pub fn udp_limit(query: &Message) -> usize {
    let advertised = query.edns.as_ref().map_or(512, |e| e.max_payload());
    usize::from(advertised.clamp(512, MAX_UDP_PAYLOAD))
}

/// `reply` on the wire within `limit` bytes: the additional section is dropped first, then
/// the answers, with the TC bit set so the client asks again over TCP. `None` when it cannot
/// be written at all.
pub fn encode(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut smaller = reply.clone();
    smaller.additionals.clear();
    if let Ok(bytes) = smaller.to_vec()
        && bytes.len() <= limit
    {
        return Some(bytes);
    }
    smaller.answers.clear();
    smaller.authorities.clear();
    smaller.metadata.truncation = true;
    smaller.to_vec().ok()
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
