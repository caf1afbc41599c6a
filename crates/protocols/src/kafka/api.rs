//! Kafka API keys: names and the first flexible version of each (from the Kafka protocol's JSON message
//! definitions, `clients/src/main/resources/common/message/*Request.json`).

/// A Kafka API key. Open: unknown keys are kept as their raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKey(pub i16);

/// (name, first flexible version or -1 when no version is flexible), indexed by API key.
const APIS: &[(&str, i16)] = &[
    ("Produce", 9),
    ("Fetch", 12),
    ("ListOffsets", 6),
    ("Metadata", 9),
    ("LeaderAndIsr", 4),
    ("StopReplica", 2),
    ("UpdateMetadata", 6),
    ("ControlledShutdown", 3),
    ("OffsetCommit", 8),
    ("OffsetFetch", 6),
    ("FindCoordinator", 3),
    ("JoinGroup", 6),
    ("Heartbeat", 4),
    ("LeaveGroup", 4),
    ("SyncGroup", 4),
    ("DescribeGroups", 5),
    ("ListGroups", 3),
    ("SaslHandshake", -1),
    ("ApiVersions", 3),
    ("CreateTopics", 5),
    ("DeleteTopics", 4),
    ("DeleteRecords", 2),
    ("InitProducerId", 2),
    ("OffsetForLeaderEpoch", 4),
    ("AddPartitionsToTxn", 3),
    ("AddOffsetsToTxn", 3),
    ("EndTxn", 3),
    ("WriteTxnMarkers", 1),
    ("TxnOffsetCommit", 3),
    ("DescribeAcls", 2),
    ("CreateAcls", 2),
    ("DeleteAcls", 2),
    ("DescribeConfigs", 4),
    ("AlterConfigs", 2),
    ("AlterReplicaLogDirs", 2),
    ("DescribeLogDirs", 2),
    ("SaslAuthenticate", 2),
    ("CreatePartitions", 2),
    ("CreateDelegationToken", 2),
    ("RenewDelegationToken", 2),
    ("ExpireDelegationToken", 2),
    ("DescribeDelegationToken", 2),
    ("DeleteGroups", 2),
    ("ElectLeaders", 2),
    ("IncrementalAlterConfigs", 1),
    ("AlterPartitionReassignments", 0),
    ("ListPartitionReassignments", 0),
    ("OffsetDelete", -1),
    ("DescribeClientQuotas", 1),
    ("AlterClientQuotas", 1),
    ("DescribeUserScramCredentials", 0),
    ("AlterUserScramCredentials", 0),
    ("Vote", 0),
    ("BeginQuorumEpoch", 1),
    ("EndQuorumEpoch", 1),
    ("DescribeQuorum", 0),
    ("AlterPartition", 0),
    ("UpdateFeatures", 0),
    ("Envelope", 0),
    ("FetchSnapshot", 0),
    ("DescribeCluster", 0),
    ("DescribeProducers", 0),
    ("BrokerRegistration", 0),
    ("BrokerHeartbeat", 0),
    ("UnregisterBroker", 0),
    ("DescribeTransactions", 0),
    ("ListTransactions", 0),
    ("AllocateProducerIds", 0),
    ("ConsumerGroupHeartbeat", 0),
    ("ConsumerGroupDescribe", 0),
    ("ControllerRegistration", 0),
    ("GetTelemetrySubscriptions", 0),
    ("PushTelemetry", 0),
    ("AssignReplicasToDirs", 0),
    ("ListClientMetricsResources", 0),
    ("DescribeTopicPartitions", 0),
    ("ShareGroupHeartbeat", 0),
    ("ShareGroupDescribe", 0),
    ("ShareFetch", 0),
    ("ShareAcknowledge", 0),
    ("AddRaftVoter", 0),
    ("RemoveRaftVoter", 0),
    ("UpdateRaftVoter", 0),
    ("InitializeShareGroupState", 0),
    ("ReadShareGroupState", 0),
    ("WriteShareGroupState", 0),
    ("DeleteShareGroupState", 0),
    ("ReadShareGroupStateSummary", 0),
    ("StreamsGroupHeartbeat", 0),
    ("StreamsGroupDescribe", 0),
    ("DescribeShareGroupOffsets", 0),
    ("AlterShareGroupOffsets", 0),
    ("DeleteShareGroupOffsets", 0),
];

/// Highest API version the probe accepts (the newest APIs are below 20).
pub const MAX_PLAUSIBLE_VERSION: i16 = 20;

impl ApiKey {
    /// Produce.
    pub const PRODUCE: ApiKey = ApiKey(0);
    /// Fetch.
    pub const FETCH: ApiKey = ApiKey(1);
    /// ListOffsets.
    pub const LIST_OFFSETS: ApiKey = ApiKey(2);
    /// Metadata.
    pub const METADATA: ApiKey = ApiKey(3);
    /// ControlledShutdown (its v0 request header has no client id).
    pub const CONTROLLED_SHUTDOWN: ApiKey = ApiKey(7);
    /// OffsetCommit.
    pub const OFFSET_COMMIT: ApiKey = ApiKey(8);
    /// OffsetFetch.
    pub const OFFSET_FETCH: ApiKey = ApiKey(9);
    /// ApiVersions (its response header is always v0).
    pub const API_VERSIONS: ApiKey = ApiKey(18);

    /// The API's name as in the Kafka protocol, `Unknown` for keys this table does not know.
    pub const fn as_str(self) -> &'static str {
        match self.entry() {
            Some((name, _)) => name,
            None => "Unknown",
        }
    }

    /// True for keys this table knows.
    pub const fn is_known(self) -> bool {
        self.entry().is_some()
    }

    const fn entry(self) -> Option<(&'static str, i16)> {
        if self.0 < 0 || self.0 as usize >= APIS.len() {
            return None;
        }
        Some(APIS[self.0 as usize])
    }

    /// Whether `version` of this API uses the flexible encoding (compact strings and arrays, tagged fields,
    /// request header v2 / response header v1).
    pub const fn is_flexible(self, version: i16) -> bool {
        match self.entry() {
            Some((_, first)) => first >= 0 && version >= first,
            None => false,
        }
    }

    /// Whether the request header of `version` carries tagged fields (request header v2).
    pub const fn request_header_tagged(self, version: i16) -> bool {
        self.is_flexible(version)
    }

    /// Whether the request header of `version` carries a client id (all but ControlledShutdown v0).
    pub const fn request_header_has_client_id(self, version: i16) -> bool {
        !(self.0 == Self::CONTROLLED_SHUTDOWN.0 && version == 0)
    }

    /// Whether the response header of `version` carries tagged fields (response header v1). ApiVersions
    /// responses always use header v0 so that any client can read them.
    pub const fn response_header_tagged(self, version: i16) -> bool {
        self.0 != Self::API_VERSIONS.0 && self.is_flexible(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flexibility() {
        assert_eq!(ApiKey(0).as_str(), "Produce");
        assert_eq!(ApiKey(18).as_str(), "ApiVersions");
        assert_eq!(ApiKey(2).as_str(), "ListOffsets");
        assert_eq!(ApiKey(60).as_str(), "DescribeCluster");
        assert_eq!(ApiKey(-1).as_str(), "Unknown");
        assert_eq!(ApiKey(500).as_str(), "Unknown");
        assert!(ApiKey::FETCH.is_flexible(12) && !ApiKey::FETCH.is_flexible(11));
        assert!(ApiKey::API_VERSIONS.request_header_tagged(3));
        assert!(!ApiKey::API_VERSIONS.response_header_tagged(3));
        assert!(ApiKey::METADATA.response_header_tagged(9));
        assert!(!ApiKey(17).is_flexible(1));
        assert!(!ApiKey::CONTROLLED_SHUTDOWN.request_header_has_client_id(0));
    }
}
