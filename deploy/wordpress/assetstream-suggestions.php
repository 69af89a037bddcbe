<?php
/**
 * Plugin Name: assetstream suggestions
 * Description: Lets assetstream's writeback group (mode "suggest") store AI suggestions for a media item's alt
 *   text, caption and description as post meta through the REST API, and shows them in the media modal next to
 *   the live fields, so an editor can copy what they approve. Install as a must-use plugin:
 *   wp-content/mu-plugins/assetstream-suggestions.php
 */

const ASSETSTREAM_SUGGESTED = array(
	'assetstream_suggested_alt_text'    => 'Suggested alt text',
	'assetstream_suggested_caption'     => 'Suggested caption',
	'assetstream_suggested_description' => 'Suggested description',
);

add_action( 'init', function () {
	foreach ( array_keys( ASSETSTREAM_SUGGESTED ) as $key ) {
		register_post_meta( 'attachment', $key, array(
			'type'          => 'string',
			'single'        => true,
			'show_in_rest'  => true,
			'auth_callback' => function () { return current_user_can( 'upload_files' ); },
		) );
	}
} );

add_filter( 'attachment_fields_to_edit', function ( $fields, $post ) {
	foreach ( ASSETSTREAM_SUGGESTED as $key => $label ) {
		$value = get_post_meta( $post->ID, $key, true );
		if ( '' !== $value ) {
			$fields[ $key ] = array( 'label' => $label, 'input' => 'html',
				'html' => '<p class="description">' . esc_html( $value ) . '</p>' );
		}
	}
	return $fields;
}, 10, 2 );
