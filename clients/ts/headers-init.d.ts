// @connectrpc/connect's declarations name the fetch type HeadersInit, which
// only the DOM lib declares globally: @types/node binds Headers but cannot bind
// this type alias. Rather than pull browser globals (window, document) into
// Node code with lib "DOM", name it after the Headers constructor Node has.
type HeadersInit = ConstructorParameters<typeof Headers>[0];
