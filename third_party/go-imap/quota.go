package imap

// QuotaResourceType is a QUOTA resource type.
//
// See RFC 9208 section 5.
type QuotaResourceType string

const (
	QuotaResourceStorage           QuotaResourceType = "STORAGE"
	QuotaResourceMessage           QuotaResourceType = "MESSAGE"
	QuotaResourceMailbox           QuotaResourceType = "MAILBOX"
	QuotaResourceAnnotationStorage QuotaResourceType = "ANNOTATION-STORAGE"
)

// QuotaData is the data of a QUOTA response: the usage and limit of each
// resource of a quota root.
//
// See RFC 9208 section 5.1.
type QuotaData struct {
	Root      string
	Resources map[QuotaResourceType]QuotaResourceData
}

// QuotaResourceData is the usage and limit of a quota resource, in the
// resource's unit (STORAGE is in units of 1024 octets).
type QuotaResourceData struct {
	Usage int64
	Limit int64
}
