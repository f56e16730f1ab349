//! original_dst mode: the arguments of Envoy's `set_envoy_filter_state` foreign function, which
//! puts the chosen `ip:port` in the filter state an ORIGINAL_DST cluster connects to. No
//! request header is involved, so no client can steer.
//!
//! The arguments are the protobuf `SetEnvoyFilterStateArguments` (Envoy's
//! `source/extensions/common/wasm/ext/set_envoy_filter_state.proto`): `1: path` (string),
//! `2: value` (string), `3: span` (enum `LifeSpan`, 1 = `DownstreamRequest`).

/// The foreign function's name.
pub const FOREIGN_FUNCTION: &str = "set_envoy_filter_state";
/// The filter-state key ORIGINAL_DST clusters read.
pub const FILTER_STATE_KEY: &str = "envoy.network.transport_socket.original_dst_address";
/// `LifeSpan::DownstreamRequest`: the state lives as long as the request.
const SPAN_DOWNSTREAM_REQUEST: u8 = 1;

fn push_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn push_string_field(out: &mut Vec<u8>, field: u8, s: &str) {
    out.push(field << 3 | 2);
    push_varint(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The encoded arguments that set the original destination to `address` (`ip:port`).
pub fn filter_state_args(address: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILTER_STATE_KEY.len() + address.len() + 8);
    push_string_field(&mut out, 1, FILTER_STATE_KEY);
    push_string_field(&mut out, 2, address);
    out.push(3 << 3);
    out.push(SPAN_DOWNSTREAM_REQUEST);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_value_and_span() {
        let args = filter_state_args("10.0.0.1:80");
        let mut expected = vec![0x0a, 51];
        expected.extend_from_slice(FILTER_STATE_KEY.as_bytes());
        expected.extend_from_slice(&[0x12, 11]);
        expected.extend_from_slice(b"10.0.0.1:80");
        expected.extend_from_slice(&[0x18, 0x01]);
        assert_eq!(FILTER_STATE_KEY.len(), 51);
        assert_eq!(args, expected);
    }

    #[test]
    fn long_values_get_multi_byte_lengths() {
        let long = "x".repeat(300);
        let args = filter_state_args(&long);
        let at = 2 + FILTER_STATE_KEY.len();
        // 300 = 0b10_0101100: low seven bits first with the continuation bit, then 2.
        assert_eq!(args.get(at..at + 3), Some(&[0x12, 0xac, 0x02][..]));
        assert_eq!(args.len(), at + 3 + 300 + 2);
    }
}
