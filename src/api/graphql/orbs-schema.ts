// The orb registry's part of the /graphql-unstable schema: the types, queries and mutations the
// classic `circleci` CLI sends for `orb …`, `namespace create` and `admin …` (circleci-cli v0,
// api/api.go). Names and argument types are the CLI's: its variable declarations (`UUID!`, `ID!`,
// `VCSType!`, `OrbListViewType`) must match them exactly, or graphql validation refuses the query.
export const ORBS_SDL = /* GraphQL */ `
  """
  Which orbs of a namespace a listing shows: public ones, or the private ones the caller may see.
  """
  enum OrbListViewType {
    PUBLIC_ONLY
    PRIVATE_ONLY
  }

  """
  The CLI upper-cases what the user typed (\`namespace create <name> github <org>\`). Torus
  organizations are plain-git ones (\`circleci/<name>\`), found by name whatever the VCS type.
  """
  enum VCSType {
    GITHUB
    BITBUCKET
    CIRCLECI
  }

  type Organization {
    id: UUID!
    name: String!
    vcsType: VCSType!
  }

  type PageInfo {
    hasNextPage: Boolean!
    """
    the cursor of the last edge (the CLI passes the last edge's cursor as \`after\`)
    """
    endCursor: String
  }

  """
  Usage over the last 30 days. Torus does not count orb usage: null (the CLI reads it as 0).
  """
  type OrbStatistics {
    last30DaysBuildCount: Int
    last30DaysProjectCount: Int
    last30DaysOrganizationCount: Int
  }

  type OrbCategory {
    id: UUID!
    name: String!
  }

  type OrbCategoryEdge {
    cursor: String!
    node: OrbCategory!
  }

  type OrbCategoryConnection {
    edges: [OrbCategoryEdge!]!
    totalCount: Int!
    pageInfo: PageInfo!
  }

  type RegistryNamespace {
    id: UUID!
    """
    the current name (a former name given to registryNamespace still finds the namespace)
    """
    name: String!
    createdAt: String!
    """
    true for a namespace imported from an upstream registry (no organization)
    """
    isImported: Boolean!
    """
    the listed orbs the caller sees, ordered by name; \`view\` defaults to PUBLIC_ONLY
    """
    orbs(first: Int, after: String, view: OrbListViewType): OrbConnection!
  }

  type Orb {
    id: UUID!
    """
    \`namespace/orb\`
    """
    name: String!
    namespace: RegistryNamespace!
    isPrivate: Boolean!
    """
    false after \`circleci orb unlist\`: left out of listings, still resolvable
    """
    listed: Boolean!
    isImported: Boolean!
    createdAt: String!
    categories: [OrbCategory!]!
    statistics: OrbStatistics!
    """
    published semantic versions, highest first (the CLI takes the first as the latest); \`count\` keeps
    the first ones. Dev versions are not listed.
    """
    versions(count: Int): [OrbVersion!]!
  }

  type OrbEdge {
    cursor: String!
    node: Orb!
  }

  type OrbConnection {
    edges: [OrbEdge!]!
    totalCount: Int!
    pageInfo: PageInfo!
  }

  type OrbVersion {
    id: UUID!
    """
    \`X.Y.Z\` or \`dev:<label>\`
    """
    version: String!
    orb: Orb!
    source: String!
    createdAt: String!
  }

  """
  A refused change, in the payload (the CLI prints these): \`type\` is the Torus error code, e.g.
  TORUS_E_CONFLICT, TORUS_E_FORBIDDEN, TORUS_E_NOT_FOUND, TORUS_E_BAD_REQUEST.
  """
  type MutationError {
    message: String!
    type: String!
  }

  type OrbVersionPayload {
    """
    the version published, promoted or imported
    """
    orb: OrbVersion
    errors: [MutationError!]!
  }

  type OrbPayload {
    orb: Orb
    errors: [MutationError!]!
  }

  type NamespacePayload {
    namespace: RegistryNamespace
    errors: [MutationError!]!
  }

  type SetOrbListStatusPayload {
    listed: Boolean
    errors: [MutationError!]!
  }

  type DeletePayload {
    deleted: Boolean!
    errors: [MutationError!]!
  }

  type OrbCategorizationPayload {
    orbId: UUID
    categoryId: UUID
    errors: [MutationError!]!
  }

  extend type Query {
    """
    Listed public orbs, ordered by name. \`certifiedOnly\` (the CLI's default; \`--uncertified\` turns it
    off) keeps CircleCI's own orbs, those of the \`circleci\` namespace.
    """
    orbs(first: Int, after: String, certifiedOnly: Boolean, view: OrbListViewType): OrbConnection!
    """
    by name, former name or id; null when there is none
    """
    registryNamespace(name: String): RegistryNamespace
    """
    \`namespace/orb\` or the orb's id; null when absent or private to an organization the caller is not in
    """
    orb(name: String, id: UUID): Orb
    """
    \`ns/orb@1.2.3\`, \`@1.2\`, \`@1\`, \`@volatile\` or \`@dev:label\`, resolved as configs resolve it; null when none
    """
    orbVersion(orbVersionRef: String!): OrbVersion
    orbCategories(first: Int, after: String): OrbCategoryConnection!
    """
    null when there is no such category
    """
    orbCategoryByName(name: String!): OrbCategory
    """
    by id, or by name (any VCS type); for its members and admins
    """
    organization(id: ID, name: String, vcsType: VCSType): Organization
  }

  type Mutation {
    """
    A version of an existing orb, named by \`orbId\` or by \`namespaceName\` and \`orbName\`: \`X.Y.Z\`
    (immutable) or \`dev:<label>\` (overwritten; expires after 90 days). The orb is validated as
    \`orbConfig\` validates it, its own \`orbs:\` resolved from this registry.
    """
    publishOrb(
      orbId: UUID
      orbName: String
      namespaceName: String
      orbYaml: String!
      version: String!
    ): OrbVersionPayload!
    """
    Publishes a dev version's source as \`semanticVersion\`: the next major, minor or patch version after
    the highest published one (what \`circleci orb publish promote\` computes), or one of the words
    major, minor, patch.
    """
    promoteOrb(
      orbId: UUID
      orbName: String
      namespaceName: String
      devVersion: String!
      semanticVersion: String!
    ): OrbVersionPayload!
    createOrb(name: String!, registryNamespaceId: UUID!, isPrivate: Boolean): OrbPayload!
    setOrbListStatus(orbId: UUID!, list: Boolean!): SetOrbListStatusPayload!
    addCategorizationToOrb(orbId: UUID!, categoryId: UUID!): OrbCategorizationPayload!
    removeCategorizationFromOrb(orbId: UUID!, categoryId: UUID!): OrbCategorizationPayload!
    createNamespace(name: String!, organizationId: UUID!): NamespacePayload!
    """
    admins; the old name stays as an alias that still resolves
    """
    renameNamespace(namespaceId: UUID!, newName: String!): NamespacePayload!
    """
    admins; frees a former name
    """
    deleteNamespaceAlias(name: String!): DeletePayload!
    """
    admins; the namespace, its aliases, orbs and versions
    """
    deleteNamespaceAndRelatedOrbs(namespaceId: UUID!): DeletePayload!
    """
    admins (\`circleci admin import-orb\`): an imported namespace, or the existing one of that name
    """
    importNamespace(name: String!): NamespacePayload!
    """
    admins: an imported orb, or the existing one
    """
    importOrb(name: String!, registryNamespaceId: UUID!): OrbPayload!
    """
    admins: an upstream version, stored as it is; the same source again changes nothing
    """
    importOrbVersion(orbId: UUID!, orbYaml: String!, version: String!): OrbVersionPayload!
  }
`;
