//! Small schema-driven walkers over Kafka request and response bodies.
//!
//! Each schema is a static list of fields with the versions they exist in, transcribed from the Kafka
//! protocol's JSON message definitions. The walker reads only what it needs (topic names, `acks`, error codes),
//! borrows everything, allocates nothing, and stops cleanly when the buffer ends (a body cut to the decode
//! window) or holds something impossible. Tagged fields of flexible versions are skipped wholesale.

/// Every version from `lo` on.
const N: i16 = i16::MAX;

/// A field type.
#[derive(Debug, Clone, Copy)]
pub enum T {
    /// int8.
    I8,
    /// int32.
    I32,
    /// int64.
    I64,
    /// uuid (16 bytes).
    Uuid,
    /// bool.
    Bool,
    /// string or nullable string.
    Str,
    /// bytes, nullable bytes or records.
    Bytes,
    /// An int16 error code: collected.
    ErrCode,
    /// A topic name (string or nullable string): the first one is collected.
    Topic,
    /// Produce's int16 `acks`: collected.
    Acks,
    /// An array of structs.
    Arr(&'static [F]),
    /// An array whose first element is read through this prefix of its fields, then the walk stops (for
    /// responses whose only interesting field sits at the start of a long element).
    First(&'static [F]),
    /// An array of int32.
    ArrI32,
    /// An array of int64.
    ArrI64,
}

/// A field: its type and the versions it is present in (`lo..=hi`).
#[derive(Debug, Clone, Copy)]
pub struct F {
    lo: i16,
    hi: i16,
    t: T,
}

const fn f(lo: i16, hi: i16, t: T) -> F {
    F { lo, hi, t }
}

/// A body schema: the fields, the highest version it describes, and whether the fields cover the whole body.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Top-level fields.
    pub fields: &'static [F],
    /// Versions above this are not decoded.
    pub max_version: i16,
    /// True when the fields describe the whole body (the walk must then end exactly at its end).
    pub complete: bool,
}

/// What a walk collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found<'a> {
    /// The first topic name.
    pub topic: Option<&'a [u8]>,
    /// Number of topic names seen.
    pub topics: u32,
    /// The first non-zero error code.
    pub error: Option<i16>,
    /// Produce `acks`.
    pub acks: Option<i16>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    flex: bool,
}

/// The walk cannot continue (truncated or impossible bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop)?;
        let s = self.buf.get(self.pos..end).ok_or(Stop)?;
        self.pos = end;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16, Stop> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, Stop> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self) -> Result<u64, Stop> {
        let mut v: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = *self.take(1)?.first().ok_or(Stop)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Stop)
    }

    /// A length-prefixed string/bytes: `None` for null.
    fn sized(&mut self, wide: bool) -> Result<Option<&'a [u8]>, Stop> {
        let len: i64 = if self.flex {
            self.uvarint()? as i64 - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if len < 0 {
            return Ok(None);
        }
        self.take(usize::try_from(len).map_err(|_| Stop)?).map(Some)
    }

    /// An array length: `None` for null.
    fn array_len(&mut self) -> Result<Option<usize>, Stop> {
        let n: i64 = if self.flex {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if n < 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| Stop)?;
        // Every element takes at least one byte: a longer count is impossible.
        if n > self.buf.len().saturating_sub(self.pos) {
            return Err(Stop);
        }
        Ok(Some(n))
    }

    fn tagged_fields(&mut self) -> Result<(), Stop> {
        if !self.flex {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size).map_err(|_| Stop)?)?;
        }
        Ok(())
    }
}

/// Outcome of walking a list of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Continue,
    /// A `First` prefix was read: stop everything.
    Done,
}

fn walk<'a>(
    c: &mut Cursor<'a>,
    fields: &[F],
    ver: i16,
    found: &mut Found<'a>,
) -> Result<Walk, Stop> {
    for fd in fields {
        if ver < fd.lo || ver > fd.hi {
            continue;
        }
        match fd.t {
            T::I8 | T::Bool => {
                c.take(1)?;
            }
            T::I32 => {
                c.i32()?;
            }
            T::I64 => {
                c.take(8)?;
            }
            T::Uuid => {
                c.take(16)?;
            }
            T::Str => {
                c.sized(false)?;
            }
            T::Bytes => {
                c.sized(true)?;
            }
            T::ErrCode => {
                let e = c.i16()?;
                // Error codes run from -1 to about 130: anything else means the walk is off track.
                if !(-1..=1000).contains(&e) {
                    return Err(Stop);
                }
                if e != 0 && found.error.is_none() {
                    found.error = Some(e);
                }
            }
            T::Acks => {
                found.acks = Some(c.i16()?);
            }
            T::Topic => {
                if let Some(name) = c.sized(false)? {
                    found.topics = found.topics.saturating_add(1);
                    if found.topic.is_none() {
                        found.topic = Some(name);
                    }
                }
            }
            T::ArrI32 | T::ArrI64 => {
                if let Some(n) = c.array_len()? {
                    let size = if matches!(fd.t, T::ArrI32) { 4 } else { 8 };
                    c.take(n.checked_mul(size).ok_or(Stop)?)?;
                }
            }
            T::Arr(elem) => {
                if let Some(n) = c.array_len()? {
                    for _ in 0..n {
                        if walk(c, elem, ver, found)? == Walk::Done {
                            return Ok(Walk::Done);
                        }
                        c.tagged_fields()?;
                    }
                }
            }
            T::First(elem) => {
                if let Some(n) = c.array_len()? {
                    if n > 0 {
                        walk(c, elem, ver, found)?;
                    }
                }
                return Ok(Walk::Done);
            }
        }
    }
    Ok(Walk::Continue)
}

/// Walk `body` (which may be cut short) with `schema` at `version`. Returns what was found and whether the walk
/// covered the whole body exactly (only meaningful for complete schemas on uncut bodies).
pub fn decode<'a>(schema: &Schema, body: &'a [u8], version: i16, flex: bool) -> (Found<'a>, bool) {
    let mut found = Found::default();
    if version > schema.max_version || version < 0 {
        return (found, false);
    }
    let mut c = Cursor {
        buf: body,
        pos: 0,
        flex,
    };
    let exact = match walk(&mut c, schema.fields, version, &mut found) {
        Ok(Walk::Continue) => c.tagged_fields().is_ok() && c.pos == body.len(),
        Ok(Walk::Done) => false,
        Err(Stop) => false,
    };
    (found, exact)
}

use T::*;

// ---- Requests (topics, acks) ----

const PRODUCE_REQ_PARTITION: &[F] = &[f(0, N, I32), f(0, N, Bytes)];
const PRODUCE_REQ_TOPIC: &[F] = &[
    f(0, 12, Topic),
    f(13, N, Uuid),
    f(0, N, Arr(PRODUCE_REQ_PARTITION)),
];
/// Produce request.
pub const PRODUCE_REQ: Schema = Schema {
    fields: &[
        f(3, N, Str),
        f(0, N, Acks),
        f(0, N, I32),
        f(0, N, Arr(PRODUCE_REQ_TOPIC)),
    ],
    max_version: 13,
    complete: true,
};

const FETCH_REQ_PARTITION: &[F] = &[
    f(0, N, I32),
    f(9, N, I32),
    f(0, N, I64),
    f(12, N, I32),
    f(5, N, I64),
    f(0, N, I32),
];
const FETCH_REQ_TOPIC: &[F] = &[
    f(0, 12, Topic),
    f(13, N, Uuid),
    f(0, N, Arr(FETCH_REQ_PARTITION)),
];
const FETCH_REQ_FORGOTTEN: &[F] = &[f(7, 12, Str), f(13, N, Uuid), f(7, N, ArrI32)];
/// Fetch request.
pub const FETCH_REQ: Schema = Schema {
    fields: &[
        f(0, 14, I32),
        f(0, N, I32),
        f(0, N, I32),
        f(3, N, I32),
        f(4, N, I8),
        f(7, N, I32),
        f(7, N, I32),
        f(0, N, Arr(FETCH_REQ_TOPIC)),
        f(7, N, Arr(FETCH_REQ_FORGOTTEN)),
        f(11, N, Str),
    ],
    max_version: 17,
    complete: true,
};

const LIST_OFFSETS_REQ_PARTITION: &[F] = &[f(0, N, I32), f(4, N, I32), f(0, N, I64), f(0, 0, I32)];
const LIST_OFFSETS_REQ_TOPIC: &[F] = &[f(0, N, Topic), f(0, N, Arr(LIST_OFFSETS_REQ_PARTITION))];
/// ListOffsets request.
pub const LIST_OFFSETS_REQ: Schema = Schema {
    fields: &[
        f(0, N, I32),
        f(2, N, I8),
        f(0, N, Arr(LIST_OFFSETS_REQ_TOPIC)),
        f(10, N, I32),
    ],
    max_version: 10,
    complete: true,
};

const METADATA_REQ_TOPIC: &[F] = &[f(10, N, Uuid), f(0, N, Topic)];
/// Metadata request.
pub const METADATA_REQ: Schema = Schema {
    fields: &[
        f(0, N, Arr(METADATA_REQ_TOPIC)),
        f(4, N, Bool),
        f(8, 10, Bool),
        f(8, N, Bool),
    ],
    max_version: 13,
    complete: true,
};

const OFFSET_COMMIT_REQ_PARTITION: &[F] = &[
    f(0, N, I32),
    f(0, N, I64),
    f(6, N, I32),
    f(1, 1, I64),
    f(0, N, Str),
];
const OFFSET_COMMIT_REQ_TOPIC: &[F] = &[
    f(0, 9, Topic),
    f(10, N, Uuid),
    f(0, N, Arr(OFFSET_COMMIT_REQ_PARTITION)),
];
/// OffsetCommit request.
pub const OFFSET_COMMIT_REQ: Schema = Schema {
    fields: &[
        f(0, N, Str),
        f(1, N, I32),
        f(1, N, Str),
        f(7, N, Str),
        f(2, 4, I64),
        f(0, N, Arr(OFFSET_COMMIT_REQ_TOPIC)),
    ],
    max_version: 10,
    complete: true,
};

const OFFSET_FETCH_REQ_TOPIC: &[F] = &[f(0, 9, Topic), f(10, N, Uuid), f(0, N, ArrI32)];
const OFFSET_FETCH_REQ_GROUP: &[F] = &[
    f(8, N, Str),
    f(9, N, Str),
    f(9, N, I32),
    f(8, N, Arr(OFFSET_FETCH_REQ_TOPIC)),
];
/// OffsetFetch request.
pub const OFFSET_FETCH_REQ: Schema = Schema {
    fields: &[
        f(0, 7, Str),
        f(0, 7, Arr(OFFSET_FETCH_REQ_TOPIC)),
        f(8, N, Arr(OFFSET_FETCH_REQ_GROUP)),
        f(7, N, Bool),
    ],
    max_version: 10,
    complete: true,
};

// ---- Responses (error codes) ----

const PRODUCE_RESP_RECORD_ERROR: &[F] = &[f(8, N, I32), f(8, N, Str)];
const PRODUCE_RESP_PARTITION: &[F] = &[
    f(0, N, I32),
    f(0, N, ErrCode),
    f(0, N, I64),
    f(2, N, I64),
    f(5, N, I64),
    f(8, N, Arr(PRODUCE_RESP_RECORD_ERROR)),
    f(8, N, Str),
];
const PRODUCE_RESP_TOPIC: &[F] = &[
    f(0, 12, Str),
    f(13, N, Uuid),
    f(0, N, Arr(PRODUCE_RESP_PARTITION)),
];
/// Produce response.
pub const PRODUCE_RESP: Schema = Schema {
    fields: &[f(0, N, Arr(PRODUCE_RESP_TOPIC)), f(1, N, I32)],
    max_version: 13,
    complete: true,
};

const FETCH_RESP_ABORTED: &[F] = &[f(4, N, I64), f(4, N, I64)];
const FETCH_RESP_PARTITION: &[F] = &[
    f(0, N, I32),
    f(0, N, ErrCode),
    f(0, N, I64),
    f(4, N, I64),
    f(5, N, I64),
    f(4, N, Arr(FETCH_RESP_ABORTED)),
    f(11, N, I32),
    f(0, N, Bytes),
];
const FETCH_RESP_TOPIC: &[F] = &[
    f(0, 12, Str),
    f(13, N, Uuid),
    f(0, N, Arr(FETCH_RESP_PARTITION)),
];
/// Fetch response.
pub const FETCH_RESP: Schema = Schema {
    fields: &[
        f(1, N, I32),
        f(7, N, ErrCode),
        f(7, N, I32),
        f(0, N, Arr(FETCH_RESP_TOPIC)),
    ],
    max_version: 17,
    complete: true,
};

const LIST_OFFSETS_RESP_PARTITION: &[F] = &[
    f(0, N, I32),
    f(0, N, ErrCode),
    f(0, 0, ArrI64),
    f(1, N, I64),
    f(1, N, I64),
    f(4, N, I32),
];
const LIST_OFFSETS_RESP_TOPIC: &[F] = &[f(0, N, Str), f(0, N, Arr(LIST_OFFSETS_RESP_PARTITION))];
/// ListOffsets response.
pub const LIST_OFFSETS_RESP: Schema = Schema {
    fields: &[f(2, N, I32), f(0, N, Arr(LIST_OFFSETS_RESP_TOPIC))],
    max_version: 10,
    complete: true,
};

const METADATA_RESP_BROKER: &[F] = &[f(0, N, I32), f(0, N, Str), f(0, N, I32), f(1, N, Str)];
const METADATA_RESP_PARTITION: &[F] = &[
    f(0, N, ErrCode),
    f(0, N, I32),
    f(0, N, I32),
    f(7, N, I32),
    f(0, N, ArrI32),
    f(0, N, ArrI32),
    f(5, N, ArrI32),
];
const METADATA_RESP_TOPIC: &[F] = &[
    f(0, N, ErrCode),
    f(0, N, Str),
    f(10, N, Uuid),
    f(1, N, Bool),
    f(0, N, Arr(METADATA_RESP_PARTITION)),
    f(8, N, I32),
];
/// Metadata response.
pub const METADATA_RESP: Schema = Schema {
    fields: &[
        f(3, N, I32),
        f(0, N, Arr(METADATA_RESP_BROKER)),
        f(2, N, Str),
        f(1, N, I32),
        f(0, N, Arr(METADATA_RESP_TOPIC)),
        f(8, 10, I32),
        f(13, N, ErrCode),
    ],
    max_version: 13,
    complete: true,
};

const OFFSET_COMMIT_RESP_PARTITION: &[F] = &[f(0, N, I32), f(0, N, ErrCode)];
const OFFSET_COMMIT_RESP_TOPIC: &[F] = &[
    f(0, 9, Str),
    f(10, N, Uuid),
    f(0, N, Arr(OFFSET_COMMIT_RESP_PARTITION)),
];
/// OffsetCommit response.
pub const OFFSET_COMMIT_RESP: Schema = Schema {
    fields: &[f(3, N, I32), f(0, N, Arr(OFFSET_COMMIT_RESP_TOPIC))],
    max_version: 10,
    complete: true,
};

const OFFSET_FETCH_RESP_PARTITION: &[F] = &[
    f(0, N, I32),
    f(0, N, I64),
    f(5, N, I32),
    f(0, N, Str),
    f(0, N, ErrCode),
];
const OFFSET_FETCH_RESP_TOPIC: &[F] = &[
    f(0, 9, Str),
    f(10, N, Uuid),
    f(0, N, Arr(OFFSET_FETCH_RESP_PARTITION)),
];
const OFFSET_FETCH_RESP_GROUP: &[F] = &[
    f(8, N, Str),
    f(8, N, Arr(OFFSET_FETCH_RESP_TOPIC)),
    f(8, N, ErrCode),
];
/// OffsetFetch response.
pub const OFFSET_FETCH_RESP: Schema = Schema {
    fields: &[
        f(3, N, I32),
        f(0, 7, Arr(OFFSET_FETCH_RESP_TOPIC)),
        f(2, 7, ErrCode),
        f(8, N, Arr(OFFSET_FETCH_RESP_GROUP)),
    ],
    max_version: 10,
    complete: true,
};

/// A response whose error code is its first field (ApiVersions, SaslHandshake, SaslAuthenticate).
pub const ERROR_FIRST: Schema = Schema {
    fields: &[f(0, N, ErrCode)],
    max_version: N,
    complete: false,
};

/// `ThrottleTimeMs` (from version `t`) then the error code.
const fn throttle_then_error(t: i16, max_version: i16) -> Schema {
    Schema {
        fields: if t == 0 {
            &THROTTLE_ERR_0
        } else if t == 1 {
            &THROTTLE_ERR_1
        } else {
            &THROTTLE_ERR_2
        },
        max_version,
        complete: false,
    }
}
const THROTTLE_ERR_0: [F; 2] = [f(0, N, I32), f(0, N, ErrCode)];
const THROTTLE_ERR_1: [F; 2] = [f(1, N, I32), f(0, N, ErrCode)];
const THROTTLE_ERR_2: [F; 2] = [f(2, N, I32), f(0, N, ErrCode)];

const FIND_COORDINATOR_ENTRY: &[F] = &[
    f(4, N, Str),
    f(4, N, I32),
    f(4, N, Str),
    f(4, N, I32),
    f(4, N, ErrCode),
];
/// FindCoordinator response.
pub const FIND_COORDINATOR_RESP: Schema = Schema {
    fields: &[
        f(1, N, I32),
        f(0, 3, ErrCode),
        f(4, N, First(FIND_COORDINATOR_ENTRY)),
    ],
    max_version: 6,
    complete: false,
};
const CREATE_TOPICS_ENTRY: &[F] = &[f(0, N, Str), f(7, N, Uuid), f(0, N, ErrCode)];
/// CreateTopics response (the first topic's error).
pub const CREATE_TOPICS_RESP: Schema = Schema {
    fields: &[f(2, N, I32), f(0, N, First(CREATE_TOPICS_ENTRY))],
    max_version: 7,
    complete: false,
};
const DELETE_TOPICS_ENTRY: &[F] = &[f(0, N, Str), f(6, N, Uuid), f(0, N, ErrCode)];
/// DeleteTopics response (the first topic's error).
pub const DELETE_TOPICS_RESP: Schema = Schema {
    fields: &[f(1, N, I32), f(0, N, First(DELETE_TOPICS_ENTRY))],
    max_version: 6,
    complete: false,
};
const DESCRIBE_GROUPS_ENTRY: &[F] = &[f(0, N, ErrCode)];
/// DescribeGroups response (the first group's error).
pub const DESCRIBE_GROUPS_RESP: Schema = Schema {
    fields: &[f(1, N, I32), f(0, N, First(DESCRIBE_GROUPS_ENTRY))],
    max_version: 6,
    complete: false,
};

/// The request schema of an API key, for the APIs whose topics are logged.
pub fn request_schema(api: i16) -> Option<&'static Schema> {
    Some(match api {
        0 => &PRODUCE_REQ,
        1 => &FETCH_REQ,
        2 => &LIST_OFFSETS_REQ,
        3 => &METADATA_REQ,
        8 => &OFFSET_COMMIT_REQ,
        9 => &OFFSET_FETCH_REQ,
        _ => return None,
    })
}

/// The response schema of an API key, for the APIs whose error codes are read.
pub fn response_schema(api: i16) -> Option<Schema> {
    Some(match api {
        0 => PRODUCE_RESP,
        1 => FETCH_RESP,
        2 => LIST_OFFSETS_RESP,
        3 => METADATA_RESP,
        8 => OFFSET_COMMIT_RESP,
        9 => OFFSET_FETCH_RESP,
        10 => FIND_COORDINATOR_RESP,
        11 => throttle_then_error(2, 9), // JoinGroup
        12 => throttle_then_error(1, 4), // Heartbeat
        13 => throttle_then_error(1, 5), // LeaveGroup
        14 => throttle_then_error(1, 5), // SyncGroup
        15 => DESCRIBE_GROUPS_RESP,
        16 => throttle_then_error(1, 5), // ListGroups
        17 | 18 | 36 => ERROR_FIRST,     // SaslHandshake, ApiVersions, SaslAuthenticate
        19 => CREATE_TOPICS_RESP,
        20 => DELETE_TOPICS_RESP,
        22 => throttle_then_error(0, 5), // InitProducerId
        25 => throttle_then_error(0, 4), // AddOffsetsToTxn
        26 => throttle_then_error(0, 5), // EndTxn
        42 => return None,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_bodies_stop_cleanly() {
        // Produce v7 request: transactional id null, acks 1, timeout, 1 topic "t" with 1 partition.
        let body = b"\xff\xff\x00\x01\x00\x00\x75\x30\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02ab";
        let (found, exact) = decode(&PRODUCE_REQ, body, 7, false);
        assert!(exact);
        assert_eq!(found.topic, Some(&b"t"[..]));
        assert_eq!(found.acks, Some(1));
        for cut in 0..body.len() {
            let (f2, exact) = decode(&PRODUCE_REQ, &body[..cut], 7, false);
            assert!(!exact);
            assert!(f2.topic.is_none() || f2.topic == Some(&b"t"[..]));
        }
        // Impossible array length.
        let (_, exact) = decode(
            &PRODUCE_REQ,
            b"\xff\xff\x00\x01\x00\x00\x75\x30\x7f\xff\xff\xff",
            7,
            false,
        );
        assert!(!exact);
        // Unknown newer version: not decoded.
        assert_eq!(decode(&PRODUCE_REQ, body, 99, false).0, Found::default());
    }
}
