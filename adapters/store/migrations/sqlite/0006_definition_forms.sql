-- Reglament storage, version 6: the Camunda Forms deployed with a definition version (issue 14).
-- The same schema, numbering and names exist for both backends.

-- One row per `.form` file a version's user tasks link (`zeebe:formDefinition formId`): its
-- form id, the file name it was deployed as, and its JSON as deployed. A version's forms never
-- change; a changed form deploys a new version.
CREATE TABLE definition_forms (
    definition_key  TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    form_id         TEXT    NOT NULL,
    file_name       TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    PRIMARY KEY (definition_key, version, form_id)
);
